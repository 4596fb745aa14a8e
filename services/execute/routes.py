"""EXECUTE's HTTP surface: /trade, /positions, /close, /orders, /account, /health."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from services.execute.consumers import close_as_commanded
from services.execute.engine import ExecutionEngine, client_order_id
from services.execute.models import OrderRecord, PositionRecord
from services.execute.settings import ExecuteSettings
from shared.contracts import (
    Action,
    ClosePosition,
    Decision,
    Envelope,
    Signal,
    SignalAnalyzed,
    Sizing,
)
from shared.http import infrastructure_checks
from shared.instruments import PAPER_PRECISION, protective_prices
from shared.liquidation import distance_to_liquidation
from shared.messaging import topology


class TradeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    symbol: str = Field(min_length=2, max_length=32, pattern=r"^[A-Za-z0-9]+$")
    side: Literal["long", "short"]
    margin_fraction: float | None = Field(None, gt=0, le=1)
    quantity: float | None = Field(None, gt=0, lt=1e12)
    leverage: int = Field(20, ge=1, le=125)

    @model_validator(mode="after")
    def _size(self) -> TradeRequest:
        if (self.margin_fraction is None) == (self.quantity is None):
            raise ValueError("give exactly one of margin_fraction and quantity")
        self.symbol = self.symbol.upper()
        return self


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    symbol: str | None = Field(None, min_length=2, max_length=32, pattern=r"^[A-Za-z0-9]+$")
    position_id: str | None = Field(None, max_length=64)
    all: bool = False
    fraction: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _target(self) -> CloseRequest:
        if not (self.all or self.symbol or self.position_id):
            raise ValueError("give symbol, position_id or all")
        if self.symbol:
            self.symbol = self.symbol.upper()
        return self


def position_view(p: PositionRecord, mark: float | None) -> dict[str, Any]:
    direction = 1 if p.side == "long" else -1
    unrealized = direction * (mark - p.entry_price) * p.quantity if mark and p.status == "open" \
        else None
    return {
        "position_id": p.position_id, "signal_id": p.signal_id, "symbol": p.symbol,
        "side": p.side, "status": p.status, "quantity": p.quantity,
        "entry_price": p.entry_price, "margin": p.margin, "leverage": p.leverage,
        "stop_loss": p.stop_loss, "take_profit": p.take_profit,
        "liquidation_price": p.liquidation_price, "mark_price": mark,
        "unrealized_pnl": unrealized,
        "roe": unrealized / p.margin if unrealized is not None and p.margin else p.roe,
        "distance_to_liquidation": distance_to_liquidation(mark, p.liquidation_price)
        if mark and p.status == "open" else None,
        "realized_pnl": p.realized_pnl, "fees": p.fees, "exit_price": p.exit_price,
        "close_reason": p.close_reason, "partial_taken": p.partial_taken,
        "opened_at": p.opened_at.isoformat(),
        "closed_at": p.closed_at.isoformat() if p.closed_at else None,
    }


def build_router(settings: ExecuteSettings, require_api_key: Any) -> APIRouter:
    router = APIRouter()
    key = [Depends(require_api_key)]

    def engine_of(request: Request) -> ExecutionEngine:
        return request.app.state.engine

    def mark_of(request: Request, symbol: str) -> float | None:
        book = request.app.state.monitor.books.get(symbol)
        return book.last_price if book and book.last_price else None

    @router.post("/trade", dependencies=key, summary="Manual entry, through RISK",
                 responses={202: {"description": "sent to RISK, no outcome yet: pending"},
                            409: {"description": "no price known for the symbol yet"}})
    async def trade(body: TradeRequest, request: Request) -> JSONResponse:
        price = mark_of(request, body.symbol)
        if price is None:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                f"no price known for {body.symbol} yet: cannot size the order")
        engine = engine_of(request)
        if body.quantity is not None:
            equity = (await request.app.state.account.current()).equity
            margin_fraction = body.quantity * price / body.leverage / equity
        else:
            margin_fraction = body.margin_fraction or 0.0
        signal_id = str(uuid.uuid4())
        precision = PAPER_PRECISION.get(body.symbol)
        stop, target = protective_prices(body.side, price, settings.stop_loss_pct,
                                         settings.take_profit_pct,
                                         precision.price_tick if precision else None)
        analysis = SignalAnalyzed(
            signal=Signal(signal_id=signal_id, symbol=body.symbol, action=Action(body.side),
                          price=price, confidence=1.0, strategy="manual",
                          received_at=datetime.now(UTC)),
            decision=Decision.EXECUTE,
            sizing=Sizing(win_rate=0.0, payoff_ratio=None, kelly=0.0,
                          margin_fraction=margin_fraction),
            leverage=body.leverage, entry_price=price, stop_loss=stop, take_profit=target)
        await request.app.state.broker.publish(
            Envelope.wrap(analysis, producer="execute", correlation_id=signal_id),
            topology.ANALYSIS.name, topology.SIGNAL_PROCESS)
        cid = client_order_id(signal_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.trade_wait_s
        while loop.time() < deadline:
            async with engine.sessions() as session:
                position = await session.get(PositionRecord, cid)
                order = await session.get(OrderRecord, cid)
            if position is not None:
                return JSONResponse({"signal_id": signal_id, "approved": True,
                                     "position": position_view(position, price)})
            if order is not None and order.status == "REJECTED":
                return JSONResponse({"signal_id": signal_id, "approved": True,
                                     "order": {"client_order_id": cid, "status": "REJECTED",
                                               "error": order.error}})
            verdict = await _risk_verdict(request, signal_id)
            if verdict is not None and not verdict.get("approved"):
                return JSONResponse({"signal_id": signal_id, "approved": False,
                                     "verdict": verdict})
            await asyncio.sleep(0.1)
        return JSONResponse({"signal_id": signal_id, "client_order_id": cid,
                             "status": "pending"}, status_code=202)

    async def _risk_verdict(request: Request, signal_id: str) -> dict[str, Any] | None:
        engine = engine_of(request)
        entries = await request.app.state.redis.xrevrange(engine.keys("risk", "stream"),
                                                          count=200)
        for _id, fields in entries:
            if fields.get("signal_id") == signal_id:
                return json.loads(fields["verdict"])
        return None

    @router.get("/positions", dependencies=key, summary="Open or closed positions")
    async def positions(request: Request,
                        status_: Literal["open", "closed"] = Query("open", alias="status"),
                        limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        engine = engine_of(request)
        async with engine.sessions() as session:
            query = select(PositionRecord).where(PositionRecord.status == status_)
            order = PositionRecord.opened_at if status_ == "open" else PositionRecord.closed_at
            rows = (await session.scalars(query.order_by(order.desc()).limit(limit))).all()
        return [position_view(p, mark_of(request, p.symbol)) for p in rows]

    @router.post("/close", dependencies=key, summary="Close at market, reduce-only")
    async def close(body: CloseRequest, request: Request) -> dict[str, Any]:
        command = ClosePosition(symbol=body.symbol, position_id=body.position_id, all=body.all,
                                fraction=body.fraction, requested_by="api")
        closed = await close_as_commanded(engine_of(request), command)
        return {"closed": [c.__dict__ for c in closed]}

    @router.get("/orders", dependencies=key, summary="Recent orders and their states")
    async def orders(request: Request, limit: int = Query(100, ge=1, le=1000)
                     ) -> list[dict[str, Any]]:
        engine = engine_of(request)
        async with engine.sessions() as session:
            rows = (await session.scalars(select(OrderRecord).order_by(
                OrderRecord.created_at.desc()).limit(limit))).all()
        return [{c.name: (v.isoformat() if isinstance(v := getattr(o, c.name), datetime) else v)
                 for c in OrderRecord.__table__.columns} for o in rows]

    @router.get("/account", dependencies=key, summary="Balance, equity, margins, today's PnL")
    async def account(request: Request) -> dict[str, Any]:
        return (await request.app.state.account.current()).model_dump(mode="json")

    @router.get("/health", summary="Liveness, exchange reachability, market-data freshness")
    async def health(request: Request) -> JSONResponse:
        state = request.app.state
        checks = await infrastructure_checks(state)
        if state.refusal:
            checks["exchange"] = f"refused: {state.refusal}"
        else:
            try:
                await asyncio.wait_for(state.engine.exchange.fetch_balance(), 3)
                checks["exchange"] = "ok"
            except Exception as exc:
                checks["exchange"] = f"down: {type(exc).__name__}"
        stale = sorted(state.monitor.stale)
        down = [name for name, value in checks.items() if value != "ok"]
        body = {"status": "unavailable" if down else ("degraded" if stale else "ok"),
                "service": settings.service_name, "checks": checks,
                "market_data": {"stale_symbols": stale}}
        return JSONResponse(body, status_code=503 if down else 200)

    return router
