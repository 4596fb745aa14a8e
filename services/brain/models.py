"""BRAIN's table: every accepted signal with its analysis."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, UtcDateTime


class SignalRecord(Base):
    __tablename__ = "signals"

    signal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # The de-duplication key; unique, so a duplicate missed by Redis still cannot be stored twice.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    symbol: Mapped[str] = mapped_column(String(32), index=True)
    action: Mapped[str] = mapped_column(String(8))
    price: Mapped[float] = mapped_column(Float)
    strategy: Mapped[str] = mapped_column(String(64))
    timeframe: Mapped[str | None] = mapped_column(String(8))
    alert_id: Mapped[str | None] = mapped_column(String(128))
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    source_ip: Mapped[str | None] = mapped_column(String(45))
    decision: Mapped[str] = mapped_column(String(8), index=True)
    phoenix95_score: Mapped[float | None] = mapped_column(Float)
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)
    analysis: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Outbox state: set once the broker confirmed both messages; unset rows are re-published.
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
