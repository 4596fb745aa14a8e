"""The book's time windows count what the tables' queries counted (services/risk/book.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.risk.book import Book
from services.risk.checks import Limits
from services.risk.models import Reservation

NOW = datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)
MIDNIGHT = datetime(2026, 11, 21, tzinfo=UTC)


def book(approvals: list[datetime] = (), reservations: dict[str, Reservation] | None = None
         ) -> Book:
    return Book(state=None, limits=Limits(allowed_symbols=frozenset()),  # type: ignore[arg-type]
                account=None, positions={}, reservations=reservations or {}, stop_outs={},
                approvals=list(approvals))


def test_approvals_in_the_last_minute_and_since_utc_midnight():
    minute_ago = NOW - timedelta(minutes=1)
    today = [MIDNIGHT, minute_ago, NOW - timedelta(seconds=59), NOW]
    kept = book([MIDNIGHT - timedelta(microseconds=1), *today])
    # As the queries had it: decided_at > now − 1 minute, and decided_at >= UTC midnight.
    assert kept.approvals_since(NOW) == (2, 4)
    assert kept.approvals == today  # yesterday's are dropped


def test_an_approval_out_of_order_is_counted_in_its_place():
    kept = book([NOW - timedelta(seconds=10)])
    kept.approve(NOW - timedelta(minutes=5))
    kept.approve(NOW)
    assert kept.approvals_since(NOW + timedelta(seconds=55)) == (1, 3)


def test_a_reservation_lives_until_it_expires():
    def reservation(signal_id: str, expires_at: datetime) -> Reservation:
        return Reservation(signal_id=signal_id, symbol="BTCUSDT", side="long", margin=1.0,
                           notional=20.0, stop_pct=0.02, expires_at=expires_at)

    kept = book(reservations={"live": reservation("live", NOW + timedelta(seconds=1)),
                              "due": reservation("due", NOW)})
    assert [r.signal_id for r in kept.live_reservations(NOW)] == ["live"]
    assert list(kept.reservations) == ["live"]
