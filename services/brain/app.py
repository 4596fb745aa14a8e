"""BRAIN's app factory: dependencies opened in the lifespan, closed on the way out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.brain.pipeline import SignalPipeline
from services.brain.ratelimit import RateLimiter
from services.brain.routes import build_router
from services.brain.settings import BrainSettings
from shared.config import is_placeholder
from shared.db import create_engine, session_factory
from shared.http import api_key_auth, service_app
from shared.messaging import Broker
from shared.observability.logging import get_logger
from shared.redis import Keys, create_redis
from shared.tasks import stop_tasks

log = get_logger(__name__)

# Publishes of concurrent webhooks, spread over channels, go out together (see Broker).
PUBLISH_CHANNELS = 8


def create_app(settings: BrainSettings | None = None) -> FastAPI:
    settings = settings or BrainSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.webhook_secret is None or is_placeholder(settings.webhook_secret):
            log.warning("WEBHOOK_SECRET is not set: every webhook will be refused with 401")
        broker = Broker(settings, producer="brain", publish_channels=PUBLISH_CHANNELS)
        broker.start()
        redis = create_redis(settings)
        engine = create_engine(settings.database_url.get_secret_value(), ping_before_use=True)
        pipeline = SignalPipeline(settings, redis, broker, session_factory(engine))
        app.state.broker, app.state.redis, app.state.db = broker, redis, engine
        app.state.pipeline = pipeline
        app.state.rate_limiter = RateLimiter(
            redis, Keys(settings.redis_prefix), settings.rate_limit_per_minute
        )
        relay = asyncio.create_task(pipeline.run_relay(), name="outbox-relay")
        log.info("BRAIN ready", webhook=f"http://localhost:{settings.brain_port}/webhook",
                 docs=f"http://localhost:{settings.brain_port}/docs")
        try:
            yield
        finally:
            await stop_tasks(relay)
            await pipeline.flush_published()
            await broker.close()
            await redis.aclose()
            await engine.dispose()

    return service_app(
        settings, title="BRAIN",
        description="TradingView webhook intake, Phoenix 95 scoring and Kelly sizing.",
        lifespan=lifespan, router=build_router(settings, api_key_auth(settings)))
