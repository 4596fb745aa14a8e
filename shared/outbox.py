"""A transactional outbox: a message is written in the same transaction as the state change
that causes it, then published with confirms and marked. Whatever a crash leaves unpublished
is sent again, under the same message id, at start-up and on every relay round.

A message whose transaction this process saw commit is published from memory, without being
read back; the relay marks the published in batches. Whenever the table may hold a message
memory does not (start-up, a failed publish, a transaction that failed), the next flush reads
the table instead. A crash between a publish and its mark re-sends the message at start-up
under its message id: consumers dedupe."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, String, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, Session, mapped_column

from shared.contracts import Envelope
from shared.db import Base, UtcDateTime
from shared.messaging import Broker
from shared.observability.logging import get_logger

log = get_logger(__name__)

BATCH = 500  # messages read from the table per publish round


class OutboxMessage(Base):
    __tablename__ = "outbox_messages"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    producer: Mapped[str] = mapped_column(String(16), index=True)
    exchange: Mapped[str] = mapped_column(String(64))
    routing_key: Mapped[str] = mapped_column(String(128))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


@dataclass(frozen=True)
class Staged:
    envelope: Envelope
    exchange: str
    routing_key: str


_last_staged = datetime.min.replace(tzinfo=UTC)


def _staged_at() -> datetime:
    """Now, but after the message staged before: messages go out in the order they were
    staged even when the clock does not tick between them."""
    global _last_staged
    _last_staged = max(datetime.now(UTC), _last_staged + timedelta(microseconds=1))
    return _last_staged


class Outbox:
    def __init__(self, producer: str, broker: Broker,
                 sessions: async_sessionmaker[AsyncSession]) -> None:
        # A batch is published concurrently: in order only on one channel (broker.py).
        if broker.publish_channels != 1:
            raise ValueError("an outbox keeps its messages' order only on one publishing channel")
        self.producer = producer
        self.broker = broker
        self.sessions = sessions
        self._lock = asyncio.Lock()  # one sender at a time keeps the order of messages
        self._committed: list[Staged] = []  # committed, not yet published, in commit order
        self._published: list[str] = []  # confirmed by the broker, not yet marked
        # Whether the table may hold an unpublished message that `_committed` does not.
        self._unsure = True
        # Read from the table in this relay round: a transaction committing just as the table
        # was read must not have its messages published a second time from memory.
        self._read_from_table: set[str] = set()

    def stage(self, session: AsyncSession, envelope: Envelope, exchange: str,
              routing_key: str) -> None:
        """Add the message to the caller's transaction; it is sent once that commits."""
        session.add(OutboxMessage(
            message_id=envelope.message_id, producer=envelope.producer, exchange=exchange,
            routing_key=routing_key, envelope=envelope.model_dump(mode="json"),
            created_at=_staged_at(),
        ))
        staged = session.info.get(self)
        if staged is None:  # the session's first: what it stages is followed to its end
            staged = session.info[self] = []
            event.listen(session.sync_session, "after_commit", self._on_commit)
            event.listen(session.sync_session, "after_soft_rollback", self._on_rollback)
        staged.append(Staged(envelope, exchange, routing_key))

    def _on_commit(self, session: Session) -> None:
        staged = session.info[self]
        self._committed += [m for m in staged
                            if m.envelope.message_id not in self._read_from_table]
        staged.clear()

    def _on_rollback(self, session: Session, previous_transaction: Any) -> None:
        staged = session.info[self]
        if staged:  # a commit that failed may still have happened: the table says
            self._unsure = True
        staged.clear()

    async def flush(self) -> int:
        """Publish every message committed and not yet published, oldest first; returns how
        many. A failure is raised after the rest of the batch went out; the relay sends what
        failed again, under the same message ids."""
        async with self._lock:
            if self._unsure:
                return await self._flush_table()
            batch, self._committed = self._committed, []
            await self._publish(batch)
            return len(batch)

    async def send_pending(self) -> None:
        """`flush` at the end of an operation whose effects are committed: a failure fails no
        caller, as the relay sends the messages once the broker answers."""
        try:
            await self.flush()
        except Exception as exc:
            log.warning("outbox not flushed now; the relay will", error=f"{type(exc).__name__}")

    async def _publish(self, batch: list[Staged]) -> None:
        """Concurrently: issued in order on one channel (the broker must publish on one),
        RabbitMQ keeps that order while the confirms come back together. gather starts its
        tasks in this order, and each reaches the channel's publish before it first waits.
        The confirmed are kept for marking; one that failed is left to the table."""
        try:
            results = await asyncio.gather(
                *(self.broker.publish(m.envelope, m.exchange, m.routing_key) for m in batch),
                return_exceptions=True)
        except BaseException:  # cancelled: any of them may have gone out
            self._unsure = True
            raise
        self._published += [m.envelope.message_id for m, result in zip(batch, results,
                                                                        strict=True)
                            if result is None]
        for result in results:
            if isinstance(result, BaseException):
                self._unsure = True
                raise result

    async def _flush_table(self) -> int:
        """Everything unpublished the table holds, read back, what memory holds included."""
        await self._mark_published()
        self._read_from_table = set()
        sent = 0
        while True:
            self._unsure = False  # a transaction failing from here on sets it again
            async with self.sessions() as session:
                pending = (await session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.producer == self.producer,
                           OutboxMessage.published_at.is_(None))
                    .order_by(OutboxMessage.created_at)
                    .limit(BATCH)
                )).all()
            read = {m.message_id for m in pending}
            self._read_from_table |= read
            self._committed = [m for m in self._committed if m.envelope.message_id not in read]
            try:
                await self._publish([
                    Staged(Envelope.model_validate(m.envelope), m.exchange, m.routing_key)
                    for m in pending])
            finally:  # the confirmed are marked even when one failed
                await self._mark_published()
            sent += len(pending)
            if len(pending) < BATCH:
                return sent

    async def _mark_published(self) -> None:
        if not self._published:
            return
        marked, self._published = self._published, []
        try:
            async with self.sessions.begin() as session:
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.message_id.in_(marked))
                    .values(published_at=datetime.now(UTC)))
        except BaseException:
            self._published = marked + self._published
            raise

    async def close(self) -> None:
        """At a clean stop: what was published is marked, so not sent again at the next start."""
        async with self._lock:
            try:
                await self._mark_published()
            except Exception as exc:
                log.warning("outbox marks not written; those messages are re-sent at start-up",
                            count=len(self._published), error=f"{type(exc).__name__}")

    async def run_relay(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                async with self._lock:
                    sent = await self._flush_table()
                if sent:
                    log.info("outbox relayed messages", count=sent)
            except Exception as exc:
                log.warning("outbox relay round failed", error=f"{type(exc).__name__}: {exc}")
