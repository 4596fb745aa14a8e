"""RISK running in-process against the test's broker, Redis and database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI

from services.risk.app import create_app
from services.risk.settings import RiskSettings
from shared.contracts import (
    Action,
    Decision,
    Envelope,
    PositionOpened,
    Scores,
    Signal,
    SignalAnalyzed,
    Sizing,
)
from shared.messaging import Broker, topology
from tests.integration.conftest import API_KEY, infrastructure


@dataclass
class Risk:
    app: FastAPI
    client: httpx.AsyncClient
    settings: RiskSettings

    async def status(self) -> dict[str, Any]:
        return (await self.client.get("/status", headers={"X-API-Key": API_KEY})).json()


def risk_settings(vhost: str, redis_prefix: str, database_url: str, **overrides: Any
                  ) -> RiskSettings:
    values = infrastructure(vhost, redis_prefix, database_url) | {"outbox_interval_s": 0.5,
                                                                  "positions_refresh_s": 0.2}
    return RiskSettings(_env_file=None, **(values | overrides))


@asynccontextmanager
async def running_risk(settings: RiskSettings) -> AsyncIterator[Risk]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.ready, 30)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://risk") as client:
            yield Risk(app, client, settings)


def analysis(symbol: str = "BTCUSDT", action: Action = Action.LONG, price: float = 43123.5,
             margin_fraction: float = 0.02, decision: Decision = Decision.EXECUTE,
             signal_id: str | None = None) -> SignalAnalyzed:
    """An analysis as BRAIN publishes it (the spec's worked example by default)."""
    signal = Signal(signal_id=signal_id or str(uuid.uuid4()), symbol=symbol, action=action,
                    price=price, confidence=0.9, rsi=50, strategy="test",
                    received_at=datetime.now(UTC))
    scored = decision is not Decision.CLOSE
    return SignalAnalyzed(
        signal=signal, decision=decision,
        scores=Scores(technical=0.99, phoenix=0.8025, market=0.56, composite=0.81025,
                      phoenix95=0.81025, final_confidence=1.0) if scored else None,
        sizing=Sizing(win_rate=0.55, payoff_ratio=1.0, kelly=0.1,
                      margin_fraction=margin_fraction) if scored else None,
        leverage=20, entry_price=price,
    )


async def publish_analysis(broker: Broker, payload: SignalAnalyzed) -> Envelope:
    envelope = Envelope.wrap(payload, producer="brain", correlation_id=payload.signal.signal_id,
                             message_id=str(uuid.uuid5(uuid.UUID(payload.signal.signal_id),
                                                       "signal.analyzed")))
    await broker.publish(envelope, topology.ANALYSIS.name, topology.SIGNAL_PROCESS)
    return envelope


def opened(position_id: str, symbol: str = "BTCUSDT", signal_id: str | None = None
           ) -> PositionOpened:
    """EXECUTE's report of a long position opened."""
    return PositionOpened(
        position_id=position_id, signal_id=signal_id, symbol=symbol, side="long",
        quantity=0.1, entry_price=60000.0, margin=300.0, leverage=20, stop_loss=58800.0,
        take_profit=61200.0, liquidation_price=57261.3, opened_at=datetime.now(UTC))
