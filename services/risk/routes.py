"""RISK's HTTP surface: /check, /status, /update, /health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from services.risk.engine import RiskEngine
from services.risk.orders import MaintenanceOverride
from services.risk.settings import RiskSettings
from shared.contracts import OrderPlan, Reason, TradingState
from shared.instruments import MAX_PRICE, MIN_PRICE

PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # no NUL or control characters (PostgreSQL refuses NUL)


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    symbol: str = Field(min_length=2, max_length=32, pattern=r"^[A-Za-z0-9]+$")
    side: Literal["long", "short"]
    price: float = Field(ge=MIN_PRICE, lt=MAX_PRICE)
    margin_fraction: float | None = Field(None, gt=0, le=1)
    quantity: float | None = Field(None, gt=0, lt=1e12)
    leverage: int = Field(20, ge=1, le=125)
    equity: float | None = Field(None, gt=0, lt=1e15, description="what-if equity")
    sent_at: AwareDatetime | None = None
    # What-if maintenance values (Binance's reference examples give them directly).
    wallet_balance: float | None = Field(None, gt=0, lt=1e15)
    maintenance_margin_rate: float | None = Field(None, ge=0, lt=1)
    maintenance_amount: float | None = Field(None, ge=0, lt=1e15)

    @field_validator("symbol")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _size(self) -> CheckRequest:
        if (self.margin_fraction is None) == (self.quantity is None):
            raise ValueError("give exactly one of margin_fraction and quantity")
        return self


class CheckResponse(BaseModel):
    approved: bool
    stage_failed: int | None
    reasons: list[Reason]
    order: OrderPlan


class LimitsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    allowed_symbols: list[str] | None = Field(None, min_length=1)
    max_signal_age_s: float | None = Field(None, gt=0)
    cooldown_after_stop_s: float | None = Field(None, ge=0)
    max_leverage: int | None = Field(None, ge=1, le=125)
    max_position_size: float | None = Field(None, gt=0, le=1)
    liquidation_buffer: float | None = Field(None, ge=0, lt=1)
    max_open_positions: int | None = Field(None, ge=1)
    reverse_on_opposite_signal: bool | None = None
    max_portfolio_risk: float | None = Field(None, gt=0)
    emergency_loss_pct: float | None = Field(None, gt=0, lt=1)
    max_orders_per_minute: int | None = Field(None, ge=1)
    max_daily_trades: int | None = Field(None, ge=1)


class UpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trading_state: TradingState | None = None
    reason: str = Field("", max_length=500, pattern=PRINTABLE)
    changed_by: str = Field("api", min_length=1, max_length=64, pattern=PRINTABLE)
    limits: LimitsUpdate | None = None

    @model_validator(mode="after")
    def _something(self) -> UpdateRequest:
        # An empty `limits` (or one of nulls only) changes nothing either.
        if self.trading_state is None and (
                self.limits is None or not self.limits.model_dump(exclude_none=True)):
            raise ValueError("give trading_state and/or limits")
        if self.trading_state is not None and not self.reason.strip():
            raise ValueError("a change of trading state needs a reason")
        return self


def build_router(settings: RiskSettings, require_api_key: Any) -> APIRouter:
    router = APIRouter()

    def engine_of(request: Request) -> RiskEngine:
        return request.app.state.engine

    @router.post("/check", response_model=CheckResponse, dependencies=[Depends(require_api_key)],
                 summary="Run the three stages on a hypothetical order")
    async def check(body: CheckRequest, request: Request) -> CheckResponse:
        verdict = await engine_of(request).check(
            symbol=body.symbol, side=body.side, price=body.price, leverage=body.leverage,
            margin_fraction=body.margin_fraction, quantity=body.quantity, equity=body.equity,
            sent_at=body.sent_at,
            override=MaintenanceOverride(body.wallet_balance, body.maintenance_margin_rate,
                                         body.maintenance_amount),
        )
        assert verdict.order is not None
        return CheckResponse(approved=verdict.approved, stage_failed=verdict.stage_failed,
                             reasons=verdict.reasons, order=verdict.order)

    async def status_of(engine: RiskEngine) -> dict[str, Any]:
        now = datetime.now(UTC)
        state = await engine.current_state()
        portfolio = await engine.portfolio(now)
        limits = await engine.limits()
        positions = await engine.open_positions()
        reservations = await engine.reservations(now)
        exposure = sum(e.notional for e in portfolio.exposures)
        at_risk = sum(e.notional * e.stop_pct for e in portfolio.exposures)
        return {
            "trading_state": state.trading_state,
            "reason": state.reason,
            "changed_by": state.changed_by,
            "changed_at": state.changed_at.isoformat(),
            "equity": portfolio.equity,
            "day_start_equity": portfolio.day_start_equity,
            "daily_pnl": portfolio.daily_pnl,
            "open_positions": [
                {"position_id": p.position_id, "symbol": p.symbol, "side": p.side,
                 "quantity": p.quantity, "entry_price": p.entry_price, "margin": p.margin,
                 "stop_loss": p.stop_loss, "liquidation_price": p.liquidation_price}
                for p in positions
            ],
            "reserved_positions": [
                {"signal_id": r.signal_id, "symbol": r.symbol, "side": r.side,
                 "margin": r.margin, "notional": r.notional,
                 "expires_at": r.expires_at.isoformat()}
                for r in reservations
            ],
            "exposure": {"notional": exposure,
                         "risk_at_stops": at_risk,
                         "risk_ratio": at_risk / portfolio.equity if portfolio.equity else None},
            "approvals_last_minute": portfolio.approvals_last_minute,
            "approvals_today": portfolio.approvals_today,
            "limits": {k: sorted(v) if isinstance(v, frozenset) else v
                       for k, v in limits.__dict__.items()},
            "market_data": engine.markets.describe(),
        }

    @router.get("/status", dependencies=[Depends(require_api_key)],
                summary="Trading state, equity, positions, exposure and limits")
    async def get_status(request: Request) -> dict[str, Any]:
        return await status_of(engine_of(request))

    @router.post("/update", dependencies=[Depends(require_api_key)],
                 summary="Change the trading state and/or limits (persisted)")
    async def post_update(body: UpdateRequest, request: Request) -> dict[str, Any]:
        engine = engine_of(request)
        limits = body.limits.model_dump(exclude_none=True) if body.limits else None
        if limits and "allowed_symbols" in limits:
            limits["allowed_symbols"] = [s.upper() for s in limits["allowed_symbols"]]
        await engine.change_state(body.trading_state, body.reason, body.changed_by, limits)
        return await status_of(engine)

    return router
