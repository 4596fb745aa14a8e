"""Fractional Kelly sizing (brain.md, "Kelly sizing"): pure functions."""

from __future__ import annotations

import math

from services.brain.scoring import Performance, Thresholds, effective_win_rate
from shared.contracts import Sizing


def kelly_fraction(p: float, b: float) -> float:
    """f* = (b·p − (1 − p)) / b; no losses at all (b infinite) gives p, no wins gives −1."""
    if b <= 0:
        return -1.0
    if math.isinf(b):
        return p
    return (b * p - (1 - p)) / b


def payoff_ratio(
    perf: Performance, t: Thresholds, take_profit_pct: float, stop_loss_pct: float
) -> float:
    """b: average win over average loss with enough history, else target over stop."""
    if perf.total_trades < t.kelly_min_trades:
        return take_profit_pct / stop_loss_pct
    if perf.avg_loss == 0:
        return math.inf
    return perf.avg_win / abs(perf.avg_loss)


def size(
    perf: Performance,
    t: Thresholds,
    final_confidence: float,
    *,
    kelly_multiplier: float,
    max_position_size: float,
    take_profit_pct: float,
    stop_loss_pct: float,
) -> Sizing:
    """margin_fraction = min(KELLY_FRACTION × f* × F, MAX_POSITION_SIZE), never negative."""
    p = effective_win_rate(perf, t)
    b = payoff_ratio(perf, t, take_profit_pct, stop_loss_pct)
    kelly = round(kelly_fraction(p, b), 12)
    margin = max(0.0, min(kelly_multiplier * kelly * final_confidence, max_position_size))
    return Sizing(
        win_rate=p,
        payoff_ratio=b if math.isfinite(b) else None,  # None: no losing trade yet
        kelly=kelly,
        margin_fraction=round(margin, 12),
    )
