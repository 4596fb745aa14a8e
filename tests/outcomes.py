"""What became of each accepted alert, read as an auditor from the services' own tables: BRAIN's
signal and decision, RISK's verdict, EXECUTE's entry order and position, and the paper
exchange's orders (what "the exchange" was sent). Used by the fault tests and the benchmark."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import UtcDateTime
from tests.stack import SYMBOL_PRICES


def burst_alert(secret: str, run: str, i: int, sent_at: str) -> dict[str, Any]:
    """Alert `i` of a run of distinct TradingView alerts over the ten default symbols, which
    change direction every round (so positions are opened and reversed); one in seven is too
    weak to trade."""
    symbols = list(SYMBOL_PRICES)
    symbol = symbols[i % len(symbols)]
    return {
        "secret": secret, "symbol": f"BINANCE:{symbol}.P",
        "action": "buy" if (i // len(symbols)) % 2 == 0 else "sell",
        "price": str(SYMBOL_PRICES[symbol]), "confidence": 0.2 if i % 7 == 6 else 0.9,
        "rsi": 50, "strategy": "p95-system", "timeframe": "15", "alert_id": f"{run}-{i}",
        "sent_at": sent_at,
    }


@dataclass
class Outcome:
    signal_id: str
    decision: str | None = None  # BRAIN's (EXECUTE, HOLD, REJECT); None: never stored
    received_at: datetime | None = None
    approved: bool | None = None  # RISK's verdict; None: none yet
    rejection: str | None = None  # the first reason's code
    decided_at: datetime | None = None
    entry_orders: int = 0  # our entry orders for the signal
    filled_at: datetime | None = None  # when its entry order was filled
    entry_rejected_at: datetime | None = None  # when EXECUTE or the exchange refused it
    positions: int = 0
    exchange_orders: int = 0  # the paper exchange's orders for those entry orders

    @property
    def final(self) -> str | None:
        """The one outcome the alert ended in, or None while it has none."""
        if self.decision in ("HOLD", "REJECT"):
            return self.decision
        if self.approved is False:
            return f"RISK_REJECTED:{self.rejection}"
        if self.approved and self.filled_at and self.positions:
            return "POSITION"
        if self.approved and self.entry_rejected_at:
            return "ORDER_REJECTED"
        return None

    @property
    def doubled(self) -> bool:
        return self.entry_orders > 1 or self.exchange_orders > 1 or self.positions > 1

    @property
    def settled_at(self) -> datetime | None:
        return {"HOLD": self.received_at, "REJECT": self.received_at, "POSITION": self.filled_at,
                "ORDER_REJECTED": self.entry_rejected_at,
                }.get(self.final or "", self.decided_at if self.final else None)

    def problems(self) -> list[str]:
        """Whatever breaks "exactly one outcome, no duplicate order"."""
        found = []
        if self.decision is None:
            found.append("no signal stored")
        if self.decision in ("HOLD", "REJECT") and (self.approved is not None
                                                    or self.entry_orders):
            found.append(f"{self.decision} went on to RISK or EXECUTE")
        if self.approved is False and self.entry_orders:
            found.append("rejected by RISK, yet ordered")
        if self.doubled:
            found.append(f"doubled: {self.entry_orders} entry orders, "
                         f"{self.exchange_orders} at the exchange, {self.positions} positions")
        if self.final is None and not found:
            found.append(f"no outcome (decision {self.decision}, approved {self.approved}, "
                         f"{self.entry_orders} orders)")
        return found


async def outcomes(database_url: str, signal_ids: list[str]) -> dict[str, Outcome]:
    """The outcome of each signal, from one consistent read of the tables."""
    found = {signal_id: Outcome(signal_id) for signal_id in signal_ids}
    ids = bindparam("ids", expanding=True)
    queries = {
        "signals": "SELECT signal_id, decision, received_at FROM signals "
                   "WHERE signal_id IN :ids",
        "verdicts": "SELECT signal_id, approved, reasons, decided_at FROM risk_verdicts "
                    "WHERE signal_id IN :ids",
        "orders": "SELECT o.signal_id, o.status, o.updated_at, "
                  "(SELECT count(*) FROM paper_orders p "
                  " WHERE p.client_order_id = o.client_order_id) AS at_exchange "
                  "FROM orders o WHERE o.purpose = 'entry' AND o.signal_id IN :ids",
        "positions": "SELECT signal_id FROM positions WHERE signal_id IN :ids",
    }
    # Typed, so that SQLite's text timestamps come back as aware datetimes too.
    timestamps = {name: UtcDateTime() for name in ("received_at", "decided_at", "updated_at")}
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = {}
            for name, sql in queries.items():
                query = text(sql).bindparams(ids).columns(
                    **{k: v for k, v in timestamps.items() if k in sql})
                rows[name] = (await connection.execute(query, {"ids": signal_ids})).all()
    finally:
        await engine.dispose()

    for signal_id, decision, received_at in rows["signals"]:
        found[signal_id].decision, found[signal_id].received_at = decision, received_at
    for signal_id, approved, reasons, decided_at in rows["verdicts"]:
        outcome = found[signal_id]
        outcome.approved, outcome.decided_at = bool(approved), decided_at
        reasons = reasons if isinstance(reasons, list) else json.loads(reasons)
        outcome.rejection = reasons[0]["code"] if reasons and not approved else None
    for signal_id, status, updated_at, at_exchange in rows["orders"]:
        outcome = found[signal_id]
        outcome.entry_orders += 1
        outcome.exchange_orders += at_exchange
        if status == "FILLED":
            outcome.filled_at = updated_at
        elif status == "REJECTED":
            outcome.entry_rejected_at = updated_at
    for signal_id, count in Counter(row[0] for row in rows["positions"]).items():
        found[signal_id].positions = count
    return found


async def book_mismatches(database_url: str) -> dict[str, tuple[list[tuple[str, float]],
                                                               tuple[str, float] | None]]:
    """Symbol -> (EXECUTE's open positions, the paper exchange's position) wherever they
    disagree: at most one position per symbol (one-way mode), of the exchange's side and size."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            ours = (await connection.execute(text(
                "SELECT symbol, side, quantity FROM positions WHERE status = 'open'"))).all()
            theirs = (await connection.execute(text(
                "SELECT symbol, side, quantity FROM paper_positions WHERE quantity > 0"))).all()
    finally:
        await engine.dispose()
    books: dict[str, list[tuple[str, float]]] = {}
    for symbol, side, quantity in ours:
        books.setdefault(symbol, []).append((side, round(quantity, 8)))
    exchange = {symbol: (side, round(quantity, 8)) for symbol, side, quantity in theirs}
    return {symbol: (books.get(symbol, []), exchange.get(symbol))
            for symbol in books.keys() | exchange.keys()
            if books.get(symbol, []) != ([exchange[symbol]] if symbol in exchange else [])}
