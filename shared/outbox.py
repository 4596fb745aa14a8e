"""A transactional outbox: a message is written in the same transaction as the state change
that causes it, then published with confirms and marked. Whatever a crash leaves unpublished
is sent again, under the same message id, at start-up and on every relay round."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
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


def stage(session: AsyncSession, envelope: Envelope, exchange: str, routing_key: str) -> None:
    """Add the message to the caller's transaction; it is sent once that commits."""
    session.add(OutboxMessage(
        message_id=envelope.message_id, producer=envelope.producer, exchange=exchange,
        routing_key=routing_key, envelope=envelope.model_dump(mode="json"),
        created_at=datetime.now(UTC),
    ))


class Outbox:
    def __init__(self, producer: str, broker: Broker,
                 sessions: async_sessionmaker[AsyncSession]) -> None:
        self.producer = producer
        self.broker = broker
        self.sessions = sessions
        self._lock = asyncio.Lock()  # one sender at a time keeps the order of messages

    async def flush(self) -> int:
        """Publish every pending message of this producer, oldest first; returns how many."""
        async with self._lock:
            async with self.sessions() as session:
                pending = (await session.scalars(
                    select(OutboxMessage)
                    .where(OutboxMessage.producer == self.producer,
                           OutboxMessage.published_at.is_(None))
                    .order_by(OutboxMessage.created_at)
                    .limit(500)
                )).all()
            for message in pending:
                envelope = Envelope.model_validate(message.envelope)
                await self.broker.publish(envelope, message.exchange, message.routing_key)
                async with self.sessions.begin() as session:
                    await session.execute(
                        update(OutboxMessage)
                        .where(OutboxMessage.message_id == message.message_id)
                        .values(published_at=datetime.now(UTC))
                    )
            return len(pending)

    async def run_relay(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                sent = await self.flush()
                if sent:
                    log.info("outbox relayed messages", count=sent)
            except Exception as exc:
                log.warning("outbox relay round failed", error=f"{type(exc).__name__}: {exc}")
