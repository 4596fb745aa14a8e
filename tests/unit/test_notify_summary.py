"""The daily summary's arithmetic: pure, with numbers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.notify.readers import closed_at
from services.notify.summary import DayStats, day_stats, seconds_to_midnight, summary_id

DAY = date(2026, 11, 20)


def close(when: str | None, pnl: float | None) -> dict[str, object]:
    return {"symbol": "BTCUSDT", "closed_at": when, "realized_pnl": pnl}


def test_the_days_closes_make_its_pnl_count_and_wins() -> None:
    closed = [
        close("2026-11-21T00:00:00+00:00", 500.0),   # the next day, at its first instant
        close("2026-11-20T23:59:59.999000+00:00", 74.55),
        close("2026-11-20T12:00:00+00:00", -20.25),
        close("2026-11-20T00:00:00+00:00", 10.5),    # the day's first instant
        close("2026-11-20T08:00:00", 0.0),           # naive: UTC; break-even is not a win
        close("2026-11-19T23:59:59+00:00", -300.0),  # the day before
        close("2026-11-20T01:00:00+02:00", 99.0),    # 2026-11-19 23:00 UTC
    ]
    stats = day_stats(closed, DAY)
    assert stats == DayStats(realized_pnl=pytest.approx(64.8), trades=4, wins=2)


def test_a_day_without_closes() -> None:
    assert day_stats([close("2026-11-19T10:00:00+00:00", 5.0)], DAY) == DayStats(0.0, 0, 0)
    assert day_stats([], DAY) == DayStats(0.0, 0, 0)


def test_closes_without_a_usable_time_or_pnl() -> None:
    closed = [close(None, 5.0), close("not a time", 5.0), close("2026-11-20T10:00:00Z", None)]
    assert day_stats(closed, DAY) == DayStats(0.0, 1, 0)
    assert closed_at(close("2026-11-20T10:00:00", 1.0)) == datetime(2026, 11, 20, 10,
                                                                     tzinfo=UTC)


def test_seconds_to_the_next_midnight_utc() -> None:
    assert seconds_to_midnight(datetime(2026, 11, 20, 23, 59, 58, tzinfo=UTC)) == 2.0
    assert seconds_to_midnight(datetime(2026, 11, 20, 0, 0, tzinfo=UTC)) == 86_400.0
    assert seconds_to_midnight(datetime(2026, 12, 31, 12, 0, tzinfo=UTC)) == 43_200.0


def test_one_id_per_day() -> None:
    assert summary_id(DAY) == "daily-summary-2026-11-20"
