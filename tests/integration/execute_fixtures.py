"""EXECUTE running in-process (paper, no market feed) against the test infrastructure."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import func, select

from services.execute.app import create_app
from services.execute.settings import ExecuteSettings
from shared.contracts import Action, Envelope, OrderPlan, Signal, TradeApproved, Verdict
from tests.conftest import REDIS_URL
from tests.integration.conftest import API_KEY, infrastructure

KEY = {"X-API-Key": API_KEY}


@dataclass
class Execute:
    app: FastAPI
    client: httpx.AsyncClient
    settings: ExecuteSettings

    async def positions(self, status: str = "open") -> list[dict[str, Any]]:
        response = await self.client.get("/positions", params={"status": status}, headers=KEY)
        return response.json()

    async def tick(self, symbol: str, price: float, mark: float | None = None) -> None:
        """A tick as the market feed writes it, into `market:stream`."""
        redis = Redis.from_url(REDIS_URL)
        fields = {"symbol": symbol, "price": str(price),
                  "ts": str(int(datetime.now(UTC).timestamp() * 1000))}
        if mark is not None:
            fields["mark_price"] = str(mark)
        await redis.xadd(self.settings.redis_prefix + "market:stream", fields)
        await redis.aclose()


def execute_settings(vhost: str, redis_prefix: str, database_url: str, **overrides: Any
                     ) -> ExecuteSettings:
    values = infrastructure(vhost, redis_prefix, database_url) | {
        "market_data": "none", "outbox_interval_s": 0.5, "reconcile_interval_s": 3600}
    return ExecuteSettings(_env_file=None, **(values | overrides))


@asynccontextmanager
async def running_execute(settings: ExecuteSettings,
                          clock: Callable[[], datetime] | None = None
                          ) -> AsyncIterator[Execute]:
    app = create_app(settings, clock=clock) if clock else create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.ready, 30)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://execute") as client:
            yield Execute(app, client, settings)


async def until(predicate: Callable[[], Any], timeout_s: float = 10.0, what: str = "") -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.1)


async def protected_positions(execute: Execute) -> list[dict[str, Any]]:
    """The open positions, once each has its stop and target resting on the exchange."""

    async def ready() -> list[dict[str, Any]] | None:
        positions = await execute.positions()
        resting = await execute.app.state.engine.exchange.fetch_open_orders()
        covered = {o.client_order_id.rsplit("-", 1)[0] for o in resting}
        if positions and all(p["position_id"] in covered for p in positions) \
                and len(resting) >= 2 * len(positions):
            return positions
        return None

    return await until(ready, what="protected positions")


def plan(symbol: str = "BTCUSDT", price: float = 43123.5, quantity: float = 0.092,
         side: str = "long") -> OrderPlan:
    s = 1 if side == "long" else -1
    return OrderPlan(
        symbol=symbol, side=side, quantity=quantity, price=price,
        notional=quantity * price, margin=quantity * price / 20, leverage=20,
        stop_loss=round(price * (1 - s * 0.02), 1), take_profit=round(price * (1 + s * 0.02), 1),
        liquidation_price=round(price * (1 - s * 0.046), 1), maintenance_margin_rate=0.004,
        maintenance_amount=0.0, distance_to_liquidation=0.046,
        risk_at_stop=quantity * price * 0.02)


def approval(order: OrderPlan, signal_id: str | None = None, reverse: bool = False
             ) -> Envelope:
    signal_id = signal_id or str(uuid.uuid4())
    signal = Signal(signal_id=signal_id, symbol=order.symbol, action=Action(order.side),
                    price=order.price, confidence=0.9, strategy="test",
                    received_at=datetime.now(UTC))
    payload = TradeApproved(signal=signal,
                            verdict=Verdict(approved=True, order=order, reverse=reverse),
                            decided_at=datetime.now(UTC))
    return Envelope.wrap(payload, producer="risk", correlation_id=signal_id,
                         message_id=str(uuid.uuid5(uuid.UUID(signal_id), "risk.verdict")))


async def count(execute, model, *where) -> int:
    async with execute.app.state.engine.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0
