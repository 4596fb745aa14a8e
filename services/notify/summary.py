"""The daily summary (notify.md, "Telegram"): at 00:00 UTC, the day that just ended (PnL,
trades, win rate) and the equity then, read from EXECUTE's API like `/pnl`.

Exactly once: the message is recorded in `notifications` as `daily-summary-<day>`, so a
restart sends nothing again and a NOTIFY that was down at midnight sends it when it starts;
a Redis claim lets only one replica compose and send it. (Telegram off, it is only logged,
at midnight and again at each start.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select

from services.notify import messages
from services.notify.consumers import Notifier
from services.notify.models import Notification
from services.notify.readers import ServiceReader, ServiceUnreachableError, closed_at
from shared.messaging import TransientError
from shared.messaging.consumer import TRANSIENT_ERRORS
from shared.observability.logging import get_logger

log = get_logger(__name__)

Clock = Callable[[], datetime]
EVENT_TYPE = "daily_summary"
RETRY_S = 60.0  # EXECUTE, Telegram, Redis or the database away: try again this much later
CLAIM_TTL_S = 600  # a replica that died holding the claim holds it no longer than this


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DayStats:
    realized_pnl: float
    trades: int
    wins: int


def day_stats(closed: Iterable[Mapping[str, Any]], day: date) -> DayStats:
    """The positions closed during `day` (UTC): their realized PnL (fees included), how
    many, and how many made a profit."""
    pnls = [float(p.get("realized_pnl") or 0.0) for p in closed
            if (when := closed_at(p)) is not None and when.astimezone(UTC).date() == day]
    return DayStats(sum(pnls), len(pnls), sum(1 for pnl in pnls if pnl > 0))


def seconds_to_midnight(now: datetime) -> float:
    """From `now` to the next 00:00 UTC."""
    midnight = datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(),
                                tzinfo=UTC)
    return (midnight - now).total_seconds()


def summary_id(day: date) -> str:
    return f"daily-summary-{day.isoformat()}"


class DailySummary:
    def __init__(self, notifier: Notifier, reader: ServiceReader, redis: Redis,
                 clock: Clock = utc_now) -> None:
        self.notifier = notifier
        self.reader = reader
        self.redis = redis
        self.clock = clock
        self._owner = str(uuid.uuid4())

    async def run(self) -> None:
        """Yesterday's summary unless already sent, then every midnight the day's."""
        while True:
            try:
                await self.send(self.clock().date() - timedelta(days=1))
            except (ServiceUnreachableError, *TRANSIENT_ERRORS) as exc:
                log.warning("daily summary not sent yet", retry_in_s=RETRY_S,
                            reason=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(RETRY_S)
                continue
            await asyncio.sleep(seconds_to_midnight(self.clock()))

    async def send(self, day: date) -> None:
        message_id = summary_id(day)
        if await self._sent(message_id):
            return
        await self._claim(message_id)
        account = await self.reader.account()
        stats = day_stats(await self.reader.closed_positions(), day)
        text = messages.daily_summary(day, realized_pnl=stats.realized_pnl,
                                      trades=stats.trades, wins=stats.wins,
                                      equity=float(account["equity"]))
        await self.notifier.deliver(message_id, EVENT_TYPE, text)
        log.info("daily summary sent", day=day.isoformat())

    async def _sent(self, message_id: str) -> bool:
        """Recorded for every chat (Telegram off: never, it is only logged)."""
        if not self.notifier.sender.enabled:
            return False
        chats = self.notifier.sender.chat_ids
        async with self.notifier.sessions() as session:
            count = await session.scalar(select(func.count()).where(
                Notification.message_id == message_id, Notification.chat_id.in_(chats)))
        return count == len(chats)

    async def _claim(self, message_id: str) -> None:
        """This replica's turn to send it, or TransientError (another is on it)."""
        key = f"{self.notifier.settings.redis_prefix}notify:claim:{message_id}"
        if await self.redis.set(key, self._owner, nx=True, ex=CLAIM_TTL_S):
            return
        if await self.redis.get(key) == self._owner:
            await self.redis.expire(key, CLAIM_TTL_S)  # ours, from an attempt that failed
            return
        raise TransientError("another NOTIFY replica is sending it")
