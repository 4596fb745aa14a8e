"""A transactional outbox: a message is written in the same transaction as the state change
that causes it, then published with confirms and marked. Whatever a crash leaves unpublished
is sent again, under the same message id, at start-up and on every relay round."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from shared.contracts import Envelope
from shared.db import Base, UtcDateTime
from shared.messaging import Broker
from shared.observability.logging import get_logger

log = get_logger(__name__)


class OutboxMessage(Base):
    __tablename__ = "outbox_messages"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    producer: Mapped[str] = mapped_column(String(16), index=True)
    exchange: Mapped[str] = mapped_column(String(64))
    routing_key: Mapped[str] = mapped_column(String(128))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


_last_staged = datetime.min.replace(tzinfo=UTC)


def _staged_at() -> datetime:
    """Now, but after the message staged before: messages go out in the order they were
    staged even when the clock does not tick between them."""
    global _last_staged
    _last_staged = max(datetime.now(UTC), _last_staged + timedelta(microseconds=1))
    return _last_staged


def stage(session: AsyncSession, envelope: Envelope, exchange: str, routing_key: str) -> None:
    """Add the message to the caller's transaction; it is sent once that commits."""
    session.add(OutboxMessage(
        message_id=envelope.message_id, producer=envelope.producer, exchange=exchange,
        routing_key=routing_key, envelope=envelope.model_dump(mode="json"),
        created_at=_staged_at(),
    ))


class Outbox:
    def __init__(self, producer: str, broker: Broker,
                 sessions: async_sessionmaker[AsyncSession]) -> None:
        self.producer = producer
        self.broker = broker
        self.sessions = sessions
        self._lock = asyncio.Lock()  # one sender at a time keeps the order of messages

    async def flush(self) -> int:
        """Publish every pending message of this producer, oldest first; returns how many.

        The batch is published concurrently: issued in order on one channel (the broker
        must publish on one), RabbitMQ keeps that order while the confirms come back
        together. Those confirmed are marked in one write; a failure is raised after, and
        the relay sends the rest again under the same message ids (consumers dedupe)."""
        async with self._lock:
            async with self.sessions() as session:
                pending = (await session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.producer == self.producer,
                           OutboxMessage.published_at.is_(None))
                    .order_by(OutboxMessage.created_at)
                    .limit(500)
                )).all()
            # gather starts its tasks in this order, and each reaches the channel's publish
            # before it first waits.
            results = await asyncio.gather(*(self._publish(m) for m in pending),
                                           return_exceptions=True)
            confirmed = [m.message_id for m, r in zip(pending, results, strict=True)
                         if r is None]
            if confirmed:
                async with self.sessions.begin() as session:
                    await session.execute(
                        update(OutboxMessage)
                        .where(OutboxMessage.message_id.in_(confirmed))
                        .values(published_at=datetime.now(UTC))
                    )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            return len(pending)

    async def _publish(self, message: OutboxMessage) -> None:
        await self.broker.publish(Envelope.model_validate(message.envelope), message.exchange,
                                  message.routing_key)

    async def run_relay(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                sent = await self.flush()
                if sent:
                    log.info("outbox relayed messages", count=sent)
            except Exception as exc:
                log.warning("outbox relay round failed", error=f"{type(exc).__name__}: {exc}")
