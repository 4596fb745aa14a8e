"""RISK's verdicts and alerts, and the control command that changes the trading state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.contracts.envelope import MessagePayload, register
from shared.contracts.reasons import Reason
from shared.contracts.signals import Signal


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # only closes and reductions
    HALTED = "HALTED"  # no new entries; closes still pass


class OrderPlan(BaseModel):
    """The concrete order RISK would place, with the math behind it (risk.md)."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    side: str  # "long" | "short"
    quantity: float
    price: float
    notional: float
    margin: float
    leverage: int
    stop_loss: float
    take_profit: float
    liquidation_price: float
    maintenance_margin_rate: float
    maintenance_amount: float
    distance_to_liquidation: float
    risk_at_stop: float


class Verdict(BaseModel):
    """RISK's decision about one analysis; `order` is filled in even when rejected."""

    model_config = ConfigDict(frozen=True)

    approved: bool
    stage_failed: int | None = None
    reasons: list[Reason] = []
    order: OrderPlan | None = None
    close: bool = False  # the analysis closes the symbol's position
    reverse: bool = False  # close the opposite position first, then open


class _VerdictMessage(MessagePayload):
    signal: Signal
    verdict: Verdict
    decided_at: datetime


@register
class TradeApproved(_VerdictMessage):
    """On `risk.management` / `trade.execute`: EXECUTE places `verdict.order`."""

    message_type = "trade.approved"


@register
class TradeRejected(_VerdictMessage):
    """On `risk.management` / `trade.rejected`."""

    message_type = "trade.rejected"


class RiskAlertCode(StrEnum):
    TRADING_STATE_CHANGED = "TRADING_STATE_CHANGED"
    LIQUIDATION_WARNING = "LIQUIDATION_WARNING"
    LIQUIDATION_CRITICAL = "LIQUIDATION_CRITICAL"


@register
class RiskAlertRaised(MessagePayload):
    """On `risk.management` / `risk.alert`."""

    message_type = "risk.alert"

    code: RiskAlertCode
    severity: str  # "info" | "warning" | "critical"
    message: str
    symbol: str | None = None
    details: dict[str, Any] = {}
    raised_at: datetime


@register
class ChangeTradingState(MessagePayload):
    """Command on `phoenix95.control` / `control.trading_state` (Telegram /halt, /resume)."""

    message_type = "control.trading_state"

    state: TradingState
    reason: str = ""
    requested_by: str
