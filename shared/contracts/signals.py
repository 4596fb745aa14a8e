"""Signals and BRAIN's analyses of them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from shared.contracts.envelope import MessagePayload, register
from shared.contracts.reasons import Reason, ReasonCode


class Action(StrEnum):
    LONG = "long"
    SHORT = "short"
    CLOSE = "close"


class Decision(StrEnum):
    EXECUTE = "EXECUTE"
    HOLD = "HOLD"
    REJECT = "REJECT"
    CLOSE = "CLOSE"


class Signal(BaseModel):
    """One TradingView alert after validation and normalisation."""

    model_config = ConfigDict(frozen=True)

    signal_id: str
    symbol: str
    action: Action
    price: float
    confidence: float
    rsi: float | None = None
    macd: float | None = None
    volume: float | None = None
    strategy: str
    timeframe: str | None = None
    alert_id: str | None = None
    sent_at: datetime | None = None
    received_at: datetime


class Scores(BaseModel):
    model_config = ConfigDict(frozen=True)

    technical: float
    phoenix: float
    market: float
    composite: float
    phoenix95: float
    final_confidence: float


class Sizing(BaseModel):
    model_config = ConfigDict(frozen=True)

    win_rate: float
    payoff_ratio: float | None  # None while there is no losing trade to divide by
    kelly: float
    margin_fraction: float


@register
class SignalReceived(MessagePayload):
    """Every accepted alert, on `trading.signals` / `signal.received.<SYMBOL>`."""

    message_type = "signal.received"

    signal: Signal


@register
class SignalAnalyzed(MessagePayload):
    """BRAIN's decision about a signal, on `phoenix95.analysis`."""

    message_type = "signal.analyzed"

    signal: Signal
    decision: Decision
    reasons: list[Reason] = []
    scores: Scores | None = None
    sizing: Sizing | None = None
    leverage: int
    entry_price: float
    stop_loss: float | None = None
    take_profit: float | None = None


__all__ = [
    "Action",
    "Decision",
    "Reason",
    "ReasonCode",
    "Scores",
    "Signal",
    "SignalAnalyzed",
    "SignalReceived",
    "Sizing",
]
