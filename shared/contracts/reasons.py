"""Machine-readable reasons: a code plus the numbers that decided it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ReasonCode(StrEnum):
    # BRAIN (brain.md, "Decision")
    CONFIDENCE_BELOW_MINIMUM = "CONFIDENCE_BELOW_MINIMUM"
    PHOENIX_SCORE_BELOW_THRESHOLD = "PHOENIX_SCORE_BELOW_THRESHOLD"
    BELOW_EXECUTION_THRESHOLD = "BELOW_EXECUTION_THRESHOLD"
    NO_EDGE = "NO_EDGE"
    # RISK, stage 1 — signal (risk.md, "The three stages")
    TRADING_HALTED = "TRADING_HALTED"
    REDUCING_ONLY = "REDUCING_ONLY"
    SYMBOL_NOT_ALLOWED = "SYMBOL_NOT_ALLOWED"
    SIGNAL_STALE = "SIGNAL_STALE"
    COOLDOWN_ACTIVE = "COOLDOWN_ACTIVE"
    # RISK, stage 2 — position
    LEVERAGE_EXCEEDS_MAX = "LEVERAGE_EXCEEDS_MAX"
    POSITION_SIZE_EXCEEDS_MAX = "POSITION_SIZE_EXCEEDS_MAX"
    NOTIONAL_BELOW_MIN = "NOTIONAL_BELOW_MIN"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    LIQUIDATION_BEFORE_STOP = "LIQUIDATION_BEFORE_STOP"
    # RISK, stage 3 — portfolio
    MAX_OPEN_POSITIONS = "MAX_OPEN_POSITIONS"
    POSITION_ALREADY_OPEN = "POSITION_ALREADY_OPEN"
    OPPOSITE_POSITION_OPEN = "OPPOSITE_POSITION_OPEN"
    PORTFOLIO_RISK_EXCEEDS_MAX = "PORTFOLIO_RISK_EXCEEDS_MAX"
    DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
    ORDER_RATE_EXCEEDED = "ORDER_RATE_EXCEEDED"
    DAILY_TRADES_EXCEEDED = "DAILY_TRADES_EXCEEDED"


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ReasonCode
    value: float | None = None
    limit: float | None = None
    message: str = ""
