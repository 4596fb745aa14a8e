"""RISK's tables: verdicts, reservations, the positions and account it learns from events,
stop-outs (cooldowns), and its trading state and limits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, UtcDateTime


class VerdictRecord(Base):
    __tablename__ = "risk_verdicts"

    # One verdict per signal: a redelivered analysis finds it and decides nothing again.
    signal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), index=True)
    approved: Mapped[bool] = mapped_column(Boolean, index=True)
    stage_failed: Mapped[int | None] = mapped_column(Integer)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    order: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    message_id: Mapped[str] = mapped_column(String(36))
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class Reservation(Base):
    """Margin and risk held by an approval until its order is filled, refused or expires."""

    __tablename__ = "risk_reservations"

    signal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    margin: Mapped[float] = mapped_column(Float)
    notional: Mapped[float] = mapped_column(Float)
    stop_pct: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class KnownPosition(Base):
    """A position as EXECUTE's events describe it."""

    __tablename__ = "risk_positions"

    position_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    signal_id: Mapped[str | None] = mapped_column(String(36))
    symbol: Mapped[str] = mapped_column(String(32), index=True)
    side: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[float] = mapped_column(Float)
    entry_price: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float)
    stop_loss: Mapped[float | None] = mapped_column(Float)
    liquidation_price: Mapped[float] = mapped_column(Float)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Kept once closed, so that a late or repeated `position.opened` cannot reopen it.
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class AccountState(Base):
    """The latest `account.updated` (a single row, id 1)."""

    __tablename__ = "risk_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    equity: Mapped[float] = mapped_column(Float)
    day_start_equity: Mapped[float] = mapped_column(Float)
    daily_pnl: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class StopOut(Base):
    __tablename__ = "risk_stop_outs"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    stopped_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RiskState(Base):
    """Trading state and limit overrides (a single row, id 1); survives restarts."""

    __tablename__ = "risk_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trading_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    limits: Mapped[dict[str, Any]] = mapped_column(JSON)
