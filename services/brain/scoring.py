"""The Phoenix 95 score and the decision: pure functions, exactly as brain.md fixes them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.contracts import Action, Decision, Reason, ReasonCode, Scores

# Scores are rounded to 12 decimals at each stage: it removes binary floating-point noise
# (0.9 × 1.1 = 0.9900000000000001) so thresholds compare as the spec's decimal arithmetic does.
_PLACES = 12

MACD_REFERENCE_PRICE = 50_000
FINAL_MULTIPLIER = 1.3
FINAL_WEIGHT = 0.95


@dataclass(frozen=True)
class Indicators:
    confidence: float
    price: float
    rsi: float | None = None
    macd: float | None = None
    volume: float | None = None


@dataclass(frozen=True)
class Performance:
    """Closed-trade performance (kept by EXECUTE); `avg_loss` is a positive magnitude."""

    win_rate: float = 0.0
    avg_win: float = 0.0
    avg_loss: float = 0.0
    total_trades: int = 0


@dataclass(frozen=True)
class Thresholds:
    min_confidence: float = 0.25
    phoenix95: float = 0.45
    execution: float = 0.85
    kelly_min_trades: int = 10
    prior_win_rate: float = 0.55


def _clamp(x: float, low: float = 0.0, high: float = 1.0) -> float:
    return max(low, min(x, high))


def _r(x: float) -> float:
    return round(x, _PLACES)


def normalised_macd(macd: float | None, price: float) -> float | None:
    """m: |MACD| re-expressed at a 50 000 reference price, so thresholds fit every symbol."""
    return None if macd is None else abs(macd) / price * MACD_REFERENCE_PRICE


def quote_volume_millions(volume: float | None, price: float) -> float | None:
    """v: the bar's volume in millions of USDT."""
    return None if volume is None else volume * price / 1_000_000


# --- Technical ---------------------------------------------------------------------------

def rsi_factor(r: float | None) -> float:
    if r is None:
        return 1.0
    if 40 <= r <= 60:
        return 1.10
    if 30 <= r < 40 or 60 < r <= 70:
        return 1.05
    if 20 <= r < 30 or 70 < r <= 80:
        return 0.95
    return 0.80


def macd_factor(m: float | None) -> float:
    if m is None:
        return 1.0
    if m > 2000:
        return 0.90
    if m > 1000:
        return 1.10
    if m > 500:
        return 1.05
    if m > 100:
        return 1.00
    return 0.95


def round_number_factor(price: float) -> float:
    """Round-number prices attract stops."""
    s = str(math.floor(price))
    if s.endswith("0000"):
        return 0.95
    if s.endswith("5000"):
        return 0.97
    if s.endswith("000"):
        return 0.98
    return 1.0


def technical_score(x: Indicators) -> float:
    m = normalised_macd(x.macd, x.price)
    product = x.confidence * rsi_factor(x.rsi) * macd_factor(m) * round_number_factor(x.price)
    return _r(min(product, 1.0))


# --- Phoenix -----------------------------------------------------------------------------

def rsi_bonus(r: float | None) -> float:
    if r is None:
        return 0.0
    if 35 <= r <= 65:
        return 0.25
    if 25 <= r < 35 or 65 < r <= 75:
        return 0.15
    if 15 <= r < 25 or 75 < r <= 85:
        return 0.05
    return -0.15


def macd_bonus(m: float | None) -> float:
    return 0.0 if m is None else min(0.2 * m / 1000, 0.2)


def volume_factor(volume: float | None, price: float) -> float:
    if volume is None:
        return 0.70
    if volume == 0:
        return 0.30
    v = quote_volume_millions(volume, price)
    assert v is not None
    if v > 500:
        return 0.95
    if v > 100:
        return 1.00
    if v > 10:
        return 0.95
    if v > 1:
        return 0.85
    return 0.70


def momentum_factor(m: float | None) -> float:
    if not m:
        return 0.5
    return min(0.5 + (m / 2000) * 0.3, 1.0)


def crowd_factor(open_positions: int) -> float:
    if open_positions > 10:
        return 0.90
    if open_positions > 5:
        return 1.00
    if open_positions > 2:
        return 1.05
    return 1.10


def phoenix_score(x: Indicators, open_positions: int) -> float:
    m = normalised_macd(x.macd, x.price)
    tech = _clamp(0.5 + rsi_bonus(x.rsi) + macd_bonus(m))
    total = (
        0.35 * x.confidence
        + 0.25 * tech
        + 0.20 * volume_factor(x.volume, x.price)
        + 0.10 * momentum_factor(m)
        + 0.10 * crowd_factor(open_positions)
    )
    return _r(_clamp(total))


# --- Market, composite, risk-adjusted, final ---------------------------------------------

def effective_win_rate(perf: Performance, t: Thresholds) -> float:
    """The measured win rate once there is enough history, else the prior."""
    return perf.win_rate if perf.total_trades >= t.kelly_min_trades else t.prior_win_rate


def market_score(perf: Performance, t: Thresholds) -> float:
    w = effective_win_rate(perf, t)
    if w > 0.8:
        score = 1.0
    elif w > 0.6:
        score = 0.9
    elif w > 0.4:
        score = 0.7
    else:
        score = 0.5
    if perf.total_trades < t.kelly_min_trades:
        score *= 0.8
    return _r(score)


def rsi_penalty(r: float | None) -> float:
    if r is None:
        return 1.0
    if r < 10 or r > 90:
        return 0.5
    if r < 20 or r > 80:
        return 0.7
    return 1.0


def volatility_penalty(m: float | None) -> float:
    if m is None:
        return 1.0
    if m > 1000:
        return 0.7
    if m > 500:
        return 0.8
    if m > 100:
        return 0.9
    return 1.0


def score(x: Indicators, open_positions: int, perf: Performance, t: Thresholds) -> Scores:
    technical = technical_score(x)
    phoenix = phoenix_score(x, open_positions)
    market = market_score(perf, t)
    composite = _r(0.3 * technical + 0.5 * phoenix + 0.2 * market)
    m = normalised_macd(x.macd, x.price)
    phoenix95 = _r(_clamp(composite * rsi_penalty(x.rsi) * volatility_penalty(m)))
    final = _r(min(phoenix95 * FINAL_MULTIPLIER * FINAL_WEIGHT, 1.0))
    return Scores(
        technical=technical, phoenix=phoenix, market=market, composite=composite,
        phoenix95=phoenix95, final_confidence=final,
    )


def decide(
    action: Action, confidence: float, scores: Scores | None, kelly: float | None,
    t: Thresholds,
) -> tuple[Decision, list[Reason]]:
    """The first rule that matches (brain.md, "Decision")."""
    if action is Action.CLOSE:
        return Decision.CLOSE, []
    if confidence < t.min_confidence:
        return Decision.REJECT, [Reason(
            code=ReasonCode.CONFIDENCE_BELOW_MINIMUM, value=confidence, limit=t.min_confidence,
            message=f"confidence {confidence} is below the minimum {t.min_confidence}",
        )]
    assert scores is not None and kelly is not None
    if scores.phoenix95 < t.phoenix95:
        return Decision.HOLD, [Reason(
            code=ReasonCode.PHOENIX_SCORE_BELOW_THRESHOLD, value=scores.phoenix95,
            limit=t.phoenix95,
            message=f"Phoenix 95 score {scores.phoenix95:.4f} is below {t.phoenix95}",
        )]
    if scores.final_confidence < t.execution:
        return Decision.HOLD, [Reason(
            code=ReasonCode.BELOW_EXECUTION_THRESHOLD, value=scores.final_confidence,
            limit=t.execution,
            message=f"final confidence {scores.final_confidence:.4f} is below {t.execution}",
        )]
    if kelly <= 0:
        return Decision.HOLD, [Reason(
            code=ReasonCode.NO_EDGE, value=kelly, limit=0.0,
            message=f"Kelly fraction {kelly:.4f}: no edge in the trade history",
        )]
    return Decision.EXECUTE, []
