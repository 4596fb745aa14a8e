"""EXECUTE's tables: orders (intent first), fills, positions, account snapshots; and the
paper exchange's own account, orders and positions, so a restart loses nothing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, UtcDateTime


class OrderRecord(Base):
    """Our side of an order. Written before it is sent (a market order as SUBMITTED, a
    resting one as NEW); never sent twice."""

    __tablename__ = "orders"

    client_order_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    signal_id: Mapped[str | None] = mapped_column(String(36), index=True)
    position_id: Mapped[str | None] = mapped_column(String(36), index=True)
    purpose: Mapped[str] = mapped_column(String(24))  # entry, stop_loss, take_profit, close
    symbol: Mapped[str] = mapped_column(String(32), index=True)
    side: Mapped[str] = mapped_column(String(4))  # buy, sell
    type: Mapped[str] = mapped_column(String(24))
    quantity: Mapped[float] = mapped_column(Float)
    price: Mapped[float | None] = mapped_column(Float)  # reference price of a market order
    stop_price: Mapped[float | None] = mapped_column(Float)
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False)
    # NEW, SUBMITTED, OPEN (resting), FILLED, REJECTED, CANCELED, UNKNOWN
    status: Mapped[str] = mapped_column(String(12), index=True)
    exchange_order_id: Mapped[str | None] = mapped_column(String(64))
    filled_quantity: Mapped[float] = mapped_column(Float, default=0.0)
    average_price: Mapped[float | None] = mapped_column(Float)
    fee: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class FillRecord(Base):
    __tablename__ = "fills"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(String(36), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    fee: Mapped[float] = mapped_column(Float)
    filled_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PositionRecord(Base):
    __tablename__ = "positions"

    position_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    signal_id: Mapped[str | None] = mapped_column(String(36), index=True)
    symbol: Mapped[str] = mapped_column(String(32), index=True)
    side: Mapped[str] = mapped_column(String(8))  # long, short
    status: Mapped[str] = mapped_column(String(8), index=True)  # open, closed
    quantity: Mapped[float] = mapped_column(Float)  # what is still open
    initial_quantity: Mapped[float] = mapped_column(Float)
    entry_price: Mapped[float] = mapped_column(Float)
    margin: Mapped[float] = mapped_column(Float)
    leverage: Mapped[int] = mapped_column(Integer)
    stop_loss: Mapped[float | None] = mapped_column(Float)
    take_profit: Mapped[float | None] = mapped_column(Float)
    liquidation_price: Mapped[float] = mapped_column(Float)
    stop_order_id: Mapped[str | None] = mapped_column(String(40))
    target_order_id: Mapped[str | None] = mapped_column(String(40))
    partial_taken: Mapped[bool] = mapped_column(Boolean, default=False)
    fees: Mapped[float] = mapped_column(Float, default=0.0)
    realized_pnl: Mapped[float] = mapped_column(Float, default=0.0)  # fees included
    exit_price: Mapped[float | None] = mapped_column(Float)
    roe: Mapped[float | None] = mapped_column(Float)
    close_reason: Mapped[str | None] = mapped_column(String(24))
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class AccountSnapshot(Base):
    __tablename__ = "account_snapshots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    wallet_balance: Mapped[float] = mapped_column(Float)
    equity: Mapped[float] = mapped_column(Float)
    used_margin: Mapped[float] = mapped_column(Float)
    free_margin: Mapped[float] = mapped_column(Float)
    day_start_equity: Mapped[float] = mapped_column(Float)
    daily_pnl: Mapped[float] = mapped_column(Float)
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


# --- the paper exchange's own state ---------------------------------------------------

class PaperAccount(Base):
    __tablename__ = "paper_account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wallet_balance: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PaperOrder(Base):
    __tablename__ = "paper_orders"

    client_order_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    exchange_order_id: Mapped[str] = mapped_column(String(40))
    symbol: Mapped[str] = mapped_column(String(32), index=True)
    side: Mapped[str] = mapped_column(String(4))
    type: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(12), index=True)
    quantity: Mapped[float] = mapped_column(Float)
    filled_quantity: Mapped[float] = mapped_column(Float)
    average_price: Mapped[float | None] = mapped_column(Float)
    stop_price: Mapped[float | None] = mapped_column(Float)
    reduce_only: Mapped[bool] = mapped_column(Boolean)
    fee: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PaperPosition(Base):
    """One-way mode: at most one position per symbol."""

    __tablename__ = "paper_positions"

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    side: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[float] = mapped_column(Float)
    entry_price: Mapped[float] = mapped_column(Float)
    leverage: Mapped[int] = mapped_column(Integer)
    isolated_margin: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
