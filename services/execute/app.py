"""EXECUTE's app factory. Start-up and recovery are one path: connect, check the exchange,
reconcile, re-send what the outbox holds, then consume and monitor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from fastapi import FastAPI

from services.execute.account import AccountKeeper
from services.execute.consumers import consumers
from services.execute.engine import PRODUCER, ExecutionEngine
from services.execute.exchange.base import Exchange, ExchangeUnavailable, TradingNotAllowed
from services.execute.models import PositionRecord
from services.execute.monitor import Monitor
from services.execute.reconcile import reconcile
from services.execute.routes import build_router
from services.execute.settings import ExecuteSettings
from shared.config import ExchangeMode
from shared.db import create_engine, session_factory
from shared.http import api_key_auth, service_app
from shared.messaging import Broker, Consumer, TransientError
from shared.observability.logging import get_logger
from shared.outbox import Outbox
from shared.redis import Keys, create_redis
from shared.tasks import stop_tasks

log = get_logger(__name__)


def make_exchange(settings: ExecuteSettings, sessions) -> Exchange:  # type: ignore[no-untyped-def]
    if settings.exchange_mode is ExchangeMode.PAPER:
        from services.execute.exchange.paper import PaperExchange

        return PaperExchange(settings, sessions)
    from services.execute.exchange.binance import BinanceExchange

    return BinanceExchange(settings)


def create_app(settings: ExecuteSettings | None = None,
               clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> FastAPI:
    settings = settings or ExecuteSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broker = Broker(settings, producer=PRODUCER)
        broker.start()
        redis = create_redis(settings)
        keys = Keys(settings.redis_prefix)
        db = create_engine(settings.database_url.get_secret_value())
        sessions = session_factory(db)
        outbox = Outbox(PRODUCER, broker, sessions)
        exchange = make_exchange(settings, sessions)
        engine = ExecutionEngine(settings, exchange, redis, sessions, outbox, clock=clock)
        account = AccountKeeper(engine)
        monitor = Monitor(engine, account, broker, redis, keys)

        async def positions_changed(positions: list[PositionRecord]) -> None:
            await monitor.reload(await account.publish(positions), positions)

        engine.on_positions_changed = positions_changed
        app.state.broker, app.state.redis, app.state.db = broker, redis, db
        app.state.engine, app.state.account, app.state.monitor = engine, account, monitor
        app.state.refusal = None
        started: list[Consumer] = []
        tasks: list[asyncio.Task[None]] = []

        async def start() -> None:
            delay = 1.0
            while True:
                try:
                    await exchange.start(settings.allowed_symbols, settings.leverage)
                    break
                except TradingNotAllowed as exc:
                    app.state.refusal = str(exc)
                    log.critical("EXECUTE refuses to trade", reason=str(exc))
                    return
                except ExchangeUnavailable as exc:
                    log.warning("exchange unreachable at start-up, retrying",
                                retry_in_s=delay, error=str(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)
            await broker.wait_connected()
            await reconcile(engine)
            await outbox.flush()
            # Whatever a crash left unrefreshed: mirrors, performance, the book, the account.
            engine.books_changed(closed=True)
            await engine.settled()
            tasks.append(asyncio.create_task(monitor.run(), name="monitor"))
            tasks.append(asyncio.create_task(monitor.housekeeping(), name="housekeeping"))
            tasks.append(asyncio.create_task(reconcile_forever(), name="reconcile"))
            if settings.exchange_mode is not ExchangeMode.PAPER:
                tasks.append(asyncio.create_task(poll_forever(), name="protective-poll"))
            if settings.market_data == "binance":
                from services.execute.feed import MarketFeed

                feed = MarketFeed(settings, redis, keys)
                tasks.append(asyncio.create_task(feed.run(), name="market-feed"))
            for consumer in consumers(broker, engine, settings.amqp_prefetch):
                await consumer.start()
                started.append(consumer)
            log.info("EXECUTE trading", mode=settings.exchange_mode.value,
                     positions=f"http://localhost:{settings.execute_port}/positions")

        async def poll_forever() -> None:
            while True:
                await asyncio.sleep(settings.protective_poll_s)
                try:
                    await engine.poll_protective_orders()
                except Exception as exc:
                    log.warning("protective order poll failed", error=f"{type(exc).__name__}")

        async def reconcile_forever() -> None:
            while True:
                await asyncio.sleep(settings.reconcile_interval_s)
                try:
                    await reconcile(engine)
                except Exception as exc:
                    log.warning("reconciliation failed", error=f"{type(exc).__name__}: {exc}")

        ready = asyncio.create_task(start(), name="execute-start")
        relay = asyncio.create_task(outbox.run_relay(settings.outbox_interval_s), name="relay")
        app.state.ready = ready
        try:
            yield
        finally:
            for consumer in started:
                await consumer.stop()
            await stop_tasks(ready, relay, *tasks)
            await engine.aclose()
            await outbox.close()
            await exchange.close()
            await broker.close()
            await redis.aclose()
            await db.dispose()

    return service_app(
        settings, title="EXECUTE",
        description="Orders exactly once, protected positions, monitoring, reconciliation.",
        lifespan=lifespan, router=build_router(settings, api_key_auth(settings)),
        unavailable=(ExchangeUnavailable, TransientError), health=False)
