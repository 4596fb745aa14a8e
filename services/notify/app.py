"""NOTIFY's app factory: consumers to Telegram, `POST /alert`, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.notify import messages
from services.notify.commands import Commands
from services.notify.consumers import Notifier, consumers
from services.notify.dashboard import Dashboard, dashboard_router
from services.notify.dead_letters import DeadLetterWatcher
from services.notify.readers import ServiceReader
from services.notify.settings import NotifySettings
from services.notify.summary import Clock, DailySummary, utc_now
from services.notify.telegram import TelegramSender
from shared.db import create_engine, session_factory
from shared.http import api_key_auth, infrastructure_checks, service_app
from shared.messaging import Broker, Consumer, TransientError
from shared.observability.logging import get_logger
from shared.redis import create_redis
from shared.tasks import stop_tasks

log = get_logger(__name__)



class AlertIn(BaseModel):
    """Our own alert, or (below) Alertmanager's webhook payload."""

    model_config = ConfigDict(extra="ignore")

    severity: Literal["info", "warning", "critical"] = "warning"
    title: str = Field(min_length=1, max_length=200)
    message: str = Field("", max_length=3500)


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: str = "firing"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class AlertmanagerPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=200)


def create_app(settings: NotifySettings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    settings = settings or NotifySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broker = Broker(settings, producer="notify")
        broker.start()
        redis = create_redis(settings)
        db = create_engine(settings.database_url.get_secret_value())
        sender = TelegramSender(settings)
        notifier = Notifier(settings, sender, session_factory(db))
        app.state.broker, app.state.redis, app.state.db = broker, redis, db
        app.state.notifier = notifier
        # The dashboard, fed by a tap and a poller of its own: live even while Telegram is away.
        reader = ServiceReader(settings)  # RISK's and EXECUTE's APIs, one client for all
        dashboard = Dashboard(settings, reader, clock)
        dashboard.start(own_health=lambda: infrastructure_checks(app.state))
        app.state.dashboard, app.state.end_streams = dashboard, dashboard.hub.close
        summary = asyncio.create_task(
            DailySummary(notifier, reader, redis, clock).run(),
            name="notify-daily-summary")
        if not sender.enabled:
            log.warning("Telegram is off (no TELEGRAM_BOT_TOKEN or TELEGRAM_CHAT_IDS): "
                        "messages are only logged")
        started: list[Consumer | DeadLetterWatcher] = []
        commands = Commands(settings, broker, reader) if sender.enabled else None
        app.state.commands = commands

        async def start() -> None:
            await broker.wait_connected()
            await dashboard.start_tap(broker)
            for consumer in [*consumers(broker, notifier),
                             DeadLetterWatcher(broker, notifier.deliver)]:
                await consumer.start()
                started.append(consumer)
            log.info("NOTIFY consuming", telegram=sender.enabled)
            if commands is not None:
                try:
                    await commands.start()
                except Exception as exc:  # Telegram down at start: alerts still flow
                    log.error("Telegram commands not started", error=repr(exc))

        ready = asyncio.create_task(start(), name="notify-start")
        app.state.ready = ready
        try:
            yield
        finally:
            await dashboard.stop()
            for consumer in started:
                await consumer.stop()
            await stop_tasks(ready, summary)
            await notifier.close()
            if commands is not None:
                await commands.stop()
            await reader.aclose()
            await sender.close()
            await broker.close()
            await redis.aclose()
            await db.dispose()

    router = APIRouter()

    @router.post("/alert", status_code=202, dependencies=[Depends(api_key_auth(settings))],
              summary="An alert (ours or Alertmanager's webhook) forwarded to Telegram")
    async def alert(request: Request, body: dict[str, Any]) -> dict[str, Any]:
        try:
            texts = _alert_texts(body)
        except ValidationError as exc:
            raise HTTPException(422, exc.errors(
                include_url=False, include_context=False, include_input=False)) from None
        notifier: Notifier = request.app.state.notifier
        for text in texts:
            # Not kept queued: Telegram away, a 503 at once, for Alertmanager to retry.
            await notifier.deliver(str(uuid.uuid4()), "alert", text, keep_queued=False)
        return {"status": "delivered", "count": len(texts)}

    def _alert_texts(body: dict[str, Any]) -> list[str]:
        if "alerts" in body:
            AlertmanagerPayload.model_validate(body)  # the shape, for a clear 422
            return [messages.alertmanager(body)]
        ours = AlertIn.model_validate(body)
        return [messages.alert(ours.title, ours.severity, ours.message)]

    router.include_router(dashboard_router(settings))
    return service_app(settings, title="NOTIFY",
                       description="Telegram alerts and commands, metrics.",
                       lifespan=lifespan, router=router, unavailable=(TransientError,))
