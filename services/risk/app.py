"""RISK's app factory. Start-up and recovery are one path: connect, re-send what the outbox
holds, then consume."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.risk.consumers import consumers
from services.risk.engine import PRODUCER, RiskEngine
from services.risk.markets import catalog_for
from services.risk.routes import build_router
from services.risk.settings import RiskSettings
from services.risk.watch import LiquidationWatch
from shared.db import create_engine, session_factory
from shared.http import api_key_auth, service_app
from shared.messaging import Broker, Consumer
from shared.observability.logging import get_logger
from shared.outbox import Outbox
from shared.redis import Keys, create_redis
from shared.tasks import stop_tasks

log = get_logger(__name__)


def create_app(settings: RiskSettings | None = None) -> FastAPI:
    settings = settings or RiskSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broker = Broker(settings, producer=PRODUCER)
        broker.start()
        redis = create_redis(settings)
        db = create_engine(settings.database_url.get_secret_value())
        sessions = session_factory(db)
        outbox = Outbox(PRODUCER, broker, sessions)
        markets = catalog_for(settings)
        engine = RiskEngine(settings, redis, sessions, outbox, markets)
        watch = LiquidationWatch(engine, redis, Keys(settings.redis_prefix),
                                 settings.positions_refresh_s)
        app.state.broker, app.state.redis, app.state.db = broker, redis, db
        app.state.engine, app.state.markets = engine, markets
        started: list[Consumer] = []

        async def start() -> None:
            # Precision and brackets before the first verdict (live: from the exchange, or the
            # bundled table if it cannot be read; never an error).
            await markets.load(settings.allowed_symbols)
            await broker.wait_connected()
            await engine.current_state()  # reads the book from the database
            await outbox.flush()  # whatever a crash left unsent goes first
            for consumer in consumers(broker, engine, settings.amqp_prefetch, watch.refresh):
                await consumer.start()
                started.append(consumer)
            log.info("RISK consuming", check=f"http://localhost:{settings.risk_port}/check")

        tasks = [
            asyncio.create_task(start(), name="risk-start"),
            asyncio.create_task(watch.run(), name="liquidation-watch"),
            asyncio.create_task(outbox.run_relay(settings.outbox_interval_s), name="relay"),
            asyncio.create_task(markets.run(), name="market-data"),
        ]
        app.state.ready = tasks[0]
        try:
            yield
        finally:
            for consumer in started:
                await consumer.stop()
            await stop_tasks(*tasks)
            await outbox.close()
            await markets.close()
            await broker.close()
            await redis.aclose()
            await db.dispose()

    return service_app(
        settings, title="RISK",
        description="Orders from analyses, liquidation math, three-stage checks, trading state.",
        lifespan=lifespan, router=build_router(settings, api_key_auth(settings)))
