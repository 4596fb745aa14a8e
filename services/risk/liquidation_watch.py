"""Liquidation-distance levels, relative to the distance at entry (risk.md).

At 20× a fresh position is about 4.6% from liquidation, so fixed bands would flag every
position from the start: WARNING below half the entry distance, CRITICAL below a quarter.
"""

from __future__ import annotations

from enum import IntEnum

from shared.contracts import RiskAlertCode

WARNING_RATIO = 0.5
CRITICAL_RATIO = 0.25


class Level(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2


def level_for(distance: float, entry_distance: float) -> Level:
    if distance < CRITICAL_RATIO * entry_distance:
        return Level.CRITICAL
    if distance < WARNING_RATIO * entry_distance:
        return Level.WARNING
    return Level.OK


def alert_for(previous: Level, current: Level) -> RiskAlertCode | None:
    """An alert only when the position enters a worse level: each level alerts once until
    the distance recovers above it (a jump straight to CRITICAL raises CRITICAL only)."""
    if current <= previous:
        return None
    return (RiskAlertCode.LIQUIDATION_CRITICAL if current is Level.CRITICAL
            else RiskAlertCode.LIQUIDATION_WARNING)
