"""A TradingView alert: validation, normalisation and its idempotency key (brain.md)."""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from shared.contracts import Action
from shared.instruments import MAX_PRICE, MIN_PRICE

_ACTIONS = {
    "buy": Action.LONG, "long": Action.LONG,
    "sell": Action.SHORT, "short": Action.SHORT,
    "close": Action.CLOSE, "exit": Action.CLOSE, "flat": Action.CLOSE,
}

# TradingView's interval notation → ours.
_TIMEFRAMES = {
    **{f"{n}m": f"{n}m" for n in (1, 3, 5, 15, 30, 45)},
    **{f"{n}h": f"{n}h" for n in (1, 2, 3, 4, 6, 8, 12)},
    "1d": "1d", "d": "1d", "1w": "1w", "w": "1w",
    **{str(n): f"{n}m" for n in (1, 3, 5, 15, 30, 45)},
    **{str(n * 60): f"{n}h" for n in (1, 2, 3, 4, 6, 8, 12)},
}

_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"  # no NUL or control characters (PostgreSQL refuses NUL)

# Identifies Phoenix 95 signal ids (uuid5 of the de-duplication key).
SIGNAL_NAMESPACE = uuid.UUID("9c4f2a5e-95a1-4c1b-9d2f-70e1f3b05e95")


def normalise_symbol(raw: str) -> str:
    """`BTCUSDT`, `btcusdt`, `BTCUSDT.P`, `BINANCE:BTCUSDT.P`, `BTC/USDT:USDT` → `BTCUSDT`."""
    s = raw.strip().upper()
    if "/" in s:  # ccxt unified: BASE/QUOTE[:SETTLE]
        base, _, rest = s.partition("/")
        s = base.rpartition(":")[2] + rest.partition(":")[0]
    else:
        s = s.rpartition(":")[2]  # TradingView's EXCHANGE:TICKER
    for suffix in (".P", ".PERP", "PERP"):
        if s.endswith(suffix) and len(s) > len(suffix):
            s = s[: -len(suffix)]
            break
    if not _SYMBOL.fullmatch(s):
        raise ValueError(f"not a symbol: {raw!r}")
    return s


def _number(value: Any) -> Any:
    """A finite float. TradingView placeholders arrive as strings ("43123.5"); booleans and
    integers too large for a float are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise ValueError("must be a finite number") from None
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return number


Number = Annotated[float, BeforeValidator(_number)]


def _parse_sent_at(value: Any) -> Any:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, bool):
        raise ValueError("must be ISO-8601 or epoch milliseconds")
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        ms = float(value)
        if not 0 < ms < 1e14:
            raise ValueError("epoch milliseconds out of range")
        return datetime.fromtimestamp(ms / 1000, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be ISO-8601 or epoch milliseconds") from None
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range") from None
    raise ValueError("must be ISO-8601 or epoch milliseconds")


class Alert(BaseModel):
    """The alert fields BRAIN understands; anything else stays only in the stored raw payload."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)

    symbol: str
    action: Action
    price: Number = Field(ge=MIN_PRICE, lt=MAX_PRICE)
    confidence: Number = Field(0.8, ge=0, le=1)
    rsi: Number | None = Field(None, ge=0, le=100)
    macd: Number | None = None
    volume: Number | None = Field(None, ge=0)
    strategy: str = Field("tradingview", min_length=1, max_length=64, pattern=_PRINTABLE)
    timeframe: str | None = None
    alert_id: str | None = Field(None, min_length=1, max_length=128, pattern=_PRINTABLE)
    sent_at: Annotated[datetime | None, BeforeValidator(_parse_sent_at)] = None

    @field_validator("symbol", mode="before")
    @classmethod
    def _symbol(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string such as BTCUSDT")
        return normalise_symbol(value)

    @field_validator("action", mode="before")
    @classmethod
    def _action(cls, value: Any) -> Action:
        action = _ACTIONS.get(value.strip().lower()) if isinstance(value, str) else None
        if action is None:
            raise ValueError("must be one of buy, sell, long, short, close, exit, flat")
        return action

    @field_validator("timeframe", mode="before")
    @classmethod
    def _timeframe(cls, value: Any) -> str | None:
        if value is None:
            return None
        timeframe = _TIMEFRAMES.get(str(value).strip().lower())
        if timeframe is None:
            raise ValueError("must be an interval such as 1m, 15m, 1h, 4h, 1d, 60, 240 or D")
        return timeframe


DURABLE_CLAIM_S = 24 * 3600


class IdempotencyKey(BaseModel):
    """What makes two deliveries the same alert, and for how long."""

    key: str  # the Redis claim
    durable: bool  # from alert_id or sent_at: claimed for 24 h, else for the dedupe window

    def claim_s(self, dedupe_window_s: int) -> int:
        return DURABLE_CLAIM_S if self.durable else dedupe_window_s


def idempotency_key(alert: Alert) -> IdempotencyKey:
    if alert.alert_id is not None:
        return IdempotencyKey(key="alert:" + alert.alert_id, durable=True)
    fields = (
        alert.symbol, alert.action.value, repr(float(alert.price)), alert.strategy,
        alert.timeframe or "", alert.sent_at.astimezone(UTC).isoformat() if alert.sent_at else "",
    )
    digest = hashlib.sha256("|".join(fields).encode()).hexdigest()
    return IdempotencyKey(key="sha256:" + digest, durable=alert.sent_at is not None)


def stored_key(key: IdempotencyKey, received_at: datetime, claim_s: int) -> str:
    """The unique key of the stored row. A key recurs legitimately once its claim has expired
    (TradingView's {{strategy.order.id}} repeats), so the claim period it fell in is part of it."""
    return f"{key.key}@{int(received_at.timestamp()) // claim_s}"


def signal_id_for(stored: str) -> str:
    """Deterministic, so a re-send after a failed publish carries the same ids."""
    return str(uuid.uuid5(SIGNAL_NAMESPACE, stored))
