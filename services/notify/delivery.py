"""Delivery to one chat: what is pending, in the order it came, and one sender task that
sends whatever is pending at its turn (one message as it is, several merged into a digest),
paced by TelegramSender, and records each message in `notifications` once Telegram accepted it.

Order and exactly-once through an outage: a message keeps its place in the pending list
until Telegram accepted it. A failed attempt leaves the list as it is and the sender tries
again, with a backoff capped at RETRY_CAP_S so that delivery resumes within seconds of
Telegram's return; what comes in meanwhile joins the end of the list. Whoever waits for a
message (the consumer's handler) only waits: when it gives up and tries again, in place or
after a redelivery, it joins the message still pending under the same message_id instead of
queueing it again at the back. Before each send, messages already in `notifications` (a
redelivery, another replica) are dropped, so nothing goes twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify import messages
from services.notify.models import Notification
from services.notify.telegram import TelegramSender
from shared.messaging import TransientError
from shared.messaging.consumer import backoff_delay
from shared.observability.logging import get_logger

log = get_logger(__name__)

RETRY_BASE_S = 0.5
RETRY_CAP_S = 5.0


@dataclass(eq=False)
class Pending:
    message_id: str
    event_type: str
    text: str
    # True: a failed attempt keeps it queued (a consumer's message, unacked, waits for it);
    # False: it fails at once, its caller answers an error and its client retries.
    keep_queued: bool
    done: asyncio.Future[None]
    sent: bool = False  # Telegram accepted it; not yet recorded (the database was away)


class ChatDelivery:
    def __init__(self, chat_id: int, sender: TelegramSender,
                 sessions: async_sessionmaker[AsyncSession]) -> None:
        self.chat_id = chat_id
        self.sender = sender
        self.sessions = sessions
        self._pending: dict[str, Pending] = {}  # in order of arrival
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def submit(self, message_id: str, event_type: str, text: str, *,
               keep_queued: bool = True) -> asyncio.Future[None]:
        """Queue a message (no await: it takes its place at once, in the caller's order);
        the future resolves once Telegram accepted it. A message still pending under the
        same id is joined, not queued twice."""
        entry = self._pending.get(message_id)
        if entry is None:
            entry = Pending(message_id, event_type, text, keep_queued,
                            asyncio.get_running_loop().create_future())
            self._pending[message_id] = entry
            self._arrived.set()
            if self._task is None:
                # In a context of its own: not logged under the first message's ids.
                self._task = asyncio.create_task(self._run(), name=f"telegram-{self.chat_id}",
                                                 context=contextvars.Context())
        return entry.done

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for entry in self._pending.values():
            entry.done.cancel()  # their messages stay unacked: redelivered after a restart
        self._pending.clear()

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._arrived.wait()
            try:
                await self.sender.ready(self.chat_id)
                await self._send_next()
                failures = 0
            except Exception as exc:  # Telegram or the database away (or a bug): try again
                failures += 1
                self._fail_unqueued(exc)
                delay = backoff_delay(failures, RETRY_BASE_S, RETRY_CAP_S)
                log.warning("telegram delivery failed, retrying", chat_id=self.chat_id,
                            pending=len(self._pending), retry_in_s=delay,
                            reason=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
            if not self._pending:
                self._arrived.clear()

    async def _send_next(self) -> None:
        entries = list(self._pending.values())
        sent = [e for e in entries if e.sent]
        if sent:  # sent before the database went away: record, never send again
            await self._record(sent)
            return
        recorded = await self._recorded([e.message_id for e in entries])
        for entry in entries:
            if entry.message_id in recorded:
                self._finish(entry)
        todo = [e for e in entries if e.message_id not in recorded]
        if not todo:
            return
        group = todo[:messages.digest_count([e.text for e in todo])]
        await self.sender.send(self.chat_id, messages.digest([e.text for e in group]))
        for entry in group:
            entry.sent = True
        await self._record(group)

    async def _recorded(self, message_ids: list[str]) -> set[str]:
        async with self.sessions() as session:
            found = await session.scalars(select(Notification.message_id).where(
                Notification.chat_id == self.chat_id,
                Notification.message_id.in_(message_ids)))
            return set(found)

    async def _record(self, entries: list[Pending]) -> None:
        now = datetime.now(UTC)

        def row(entry: Pending) -> Notification:
            return Notification(message_id=entry.message_id, chat_id=self.chat_id,
                                event_type=entry.event_type, text=entry.text, sent_at=now)

        try:
            async with self.sessions.begin() as session:
                session.add_all([row(e) for e in entries])
        except IntegrityError:  # another replica recorded some first: the others one by one
            for entry in entries:
                with contextlib.suppress(IntegrityError):
                    async with self.sessions.begin() as session:
                        session.add(row(entry))
        for entry in entries:
            self._finish(entry)

    def _finish(self, entry: Pending) -> None:
        del self._pending[entry.message_id]
        if not entry.done.done():
            entry.done.set_result(None)

    def _fail_unqueued(self, exc: Exception) -> None:
        for entry in list(self._pending.values()):
            if not entry.keep_queued and not entry.sent:
                del self._pending[entry.message_id]
                error = exc if isinstance(exc, TransientError) else TransientError(
                    f"Telegram delivery failed: {type(exc).__name__}")
                if not entry.done.done():
                    entry.done.set_exception(error)
