"""What RISK decides with, kept in memory: the live rows of its own tables.

RISK is the only writer of these tables, and runs as a single process whose engine makes one
write at a time (a second RISK process is not supported: neither would see the other's writes).
So the book is read from the database at start-up, and again after any write that failed (a
failed commit may or may not have happened); otherwise it is changed only once the transaction
that changes the database has committed. A verdict reads no table.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.risk.checks import Limits
from services.risk.models import AccountState, KnownPosition, Reservation, RiskState


def utc_midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Book:
    """Rows as committed, outside any session (never added to one again)."""

    state: RiskState
    limits: Limits  # the settings' defaults with `state.limits` applied
    account: AccountState | None
    positions: dict[str, KnownPosition]  # open ones, by position id
    reservations: dict[str, Reservation]  # unreleased ones, by signal id
    stop_outs: dict[str, datetime]  # last stop-out by symbol
    approvals: list[datetime]  # when today's approvals were decided, oldest first

    def keep(self, position: KnownPosition) -> None:
        if position.closed_at is None:
            self.positions[position.position_id] = position
        else:
            self.positions.pop(position.position_id, None)

    def live_reservations(self, now: datetime) -> list[Reservation]:
        """Those not yet expired; expired ones are dropped (the database keeps them, unread)."""
        for signal_id in [s for s, r in self.reservations.items() if r.expires_at <= now]:
            del self.reservations[signal_id]
        return list(self.reservations.values())

    def approve(self, decided_at: datetime) -> None:
        bisect.insort(self.approvals, decided_at)

    def approvals_since(self, now: datetime) -> tuple[int, int]:
        """Approvals in the last minute, and since UTC midnight (earlier days are dropped)."""
        del self.approvals[:bisect.bisect_left(self.approvals, utc_midnight(now))]
        last_minute = len(self.approvals) - bisect.bisect_right(self.approvals,
                                                                 now - timedelta(minutes=1))
        return last_minute, len(self.approvals)
