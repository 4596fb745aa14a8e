"""EXECUTE's order and position lifecycle (execute.md): the I/O around the exchange.

Exactly once: a market order's row is committed SUBMITTED before it is sent, then FILLED /
REJECTED from the answer. A timeout makes it UNKNOWN, resolved by asking the exchange for our
client order id — never by sending again. A position's events leave through the outbox in the
transaction that records the fill.

What is derived from the books (Redis mirrors, the monitor's book, `account.updated`, the
performance) is refreshed behind the changes, once per burst, after the operation that made
them: none of it delays an entry.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from redis.asyncio import Redis
from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.execute.exchange.base import (
    Exchange,
    ExchangeOrder,
    ExchangeUnavailable,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderType,
)
from services.execute.metrics import ORDERS, POSITIONS_OPEN, REALIZED_PNL
from services.execute.models import FillRecord, OrderRecord, PositionRecord
from services.execute.settings import ExecuteSettings
from shared.brackets import BUNDLED, FALLBACK, bracket_for
from shared.contracts import (
    Envelope,
    ExecutionAlertRaised,
    MessagePayload,
    OrderPlan,
    OrderUpdated,
    PositionClosed,
    PositionOpened,
    TradeApproved,
)
from shared.instruments import PAPER_PRECISION, round_to_tick
from shared.liquidation import liquidation_price
from shared.messaging import TransientError, topology
from shared.observability.logging import get_logger
from shared.outbox import Outbox
from shared.redis import Keys
from shared.tasks import stop_tasks

log = get_logger(__name__)

PRODUCER = "execute"
RESOLVE_ATTEMPTS = 6  # asking the exchange about an UNKNOWN order: 0.5 s doubling, ≈ 30 s
# An order just sent may take a moment to show up: "not found" counts only from the third ask.
NOT_FOUND_CONCLUSIVE_AFTER = 2
TRADE_STREAM_MAXLEN = 10_000

T = TypeVar("T")

# A protective order by purpose: its type, its client id's suffix, the position's column.
PROTECTIVE = {"stop_loss": (OrderType.STOP_MARKET, "sl", "stop_order_id"),
              "take_profit": (OrderType.TAKE_PROFIT_MARKET, "tp", "target_order_id")}


# Every order we place has a client id starting with it: the entry's, and the position's
# orders after it (`<entry id>-sl`, `-tp`, `-c1`…).
CLIENT_ID_PREFIX = "p95-"


def client_order_id(signal_id: str) -> str:
    """The prefix + a short stable hash of the signal id: Binance's charset, ≤ 36 characters."""
    return CLIENT_ID_PREFIX + hashlib.sha256(signal_id.encode()).hexdigest()[:24]


def _matches(order: ExchangeOrder, stop_price: float, quantity: float) -> bool:
    return (order.stop_price is not None and abs(order.stop_price - stop_price) < 1e-9
            * max(1.0, stop_price) + 1e-12 and abs(order.quantity - quantity) < 1e-9)


async def _together(*calls: Awaitable[T]) -> list[T]:
    """Runs the calls concurrently; all of them finish before a failure is raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def entry_side(side: str) -> OrderSide:
    return OrderSide.BUY if side == "long" else OrderSide.SELL


def exit_side(side: str) -> OrderSide:
    return OrderSide.SELL if side == "long" else OrderSide.BUY


def realized_pnl(side: str, entry: float, exit_price: float, quantity: float) -> float:
    """s × (exit − entry) × qty, before fees."""
    return (1 if side == "long" else -1) * (exit_price - entry) * quantity


def position_liquidation_price(symbol: str, side: str, quantity: float, entry: float,
                               margin: float) -> float:
    """Recomputed from the actual fill (execute.md), with the bracket of the notional."""
    bracket = bracket_for(BUNDLED.get(symbol, FALLBACK), quantity * entry)
    lp = liquidation_price(side, quantity, entry, margin, bracket.maintenance_margin_rate,
                           bracket.maintenance_amount)
    precision = PAPER_PRECISION.get(symbol)
    return round_to_tick(lp, precision.price_tick if precision else None)


@dataclass(frozen=True)
class Closed:
    position_id: str
    reason: str
    realized_pnl: float
    exit_price: float


class ExecutionEngine:
    def __init__(self, settings: ExecuteSettings, exchange: Exchange, redis: Redis,
                 sessions: async_sessionmaker[AsyncSession], outbox: Outbox,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.exchange = exchange
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.sessions = sessions
        self.outbox = outbox
        self.now = clock
        # One change of orders and positions at a time: the monitor, consumers and the API
        # all come through here, and a position must never be closed twice.
        self.lock = asyncio.Lock()
        # One approval per symbol at a time, whole: a reversal's close and open must not
        # interleave with the next approval's (it would close nothing, then open beside it).
        self._approval_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Given the open positions after a change: the monitor's book and the account.
        self.on_positions_changed: Callable[[list[PositionRecord]], Awaitable[Any]] | None \
            = None
        # Whether the books changed since the derived state was last refreshed.
        self._stale = False
        self._performance_stale = False
        self._refresher: asyncio.Task[None] | None = None

    # --- messages --------------------------------------------------------------------

    def _stage(self, session: AsyncSession, payload: MessagePayload, routing_key: str,
               correlation_id: str | None) -> None:
        envelope = Envelope.wrap(payload, producer=PRODUCER,
                                 correlation_id=correlation_id or "execute")
        self.outbox.stage(session, envelope, topology.TRADING_EXECUTION.name, routing_key)

    def _stage_order(self, session: AsyncSession, row: OrderRecord) -> None:
        event = OrderUpdated(
            client_order_id=row.client_order_id, signal_id=row.signal_id, symbol=row.symbol,
            side=row.side, status=row.status, quantity=row.quantity,
            filled_quantity=row.filled_quantity, average_price=row.average_price,
            reduce_only=row.reduce_only, error=row.error, updated_at=row.updated_at)
        self._stage(session, event, f"order.{row.status.lower()}.{row.symbol}", row.signal_id)
        ORDERS.labels(row.status).inc()

    def stage_alert(self, session: AsyncSession, code: str, symbol: str | None, message: str,
                    severity: str = "warning", **details: Any) -> None:
        alert = ExecutionAlertRaised(code=code, severity=severity, message=message,
                                     symbol=symbol, details=details, raised_at=self.now())
        self._stage(session, alert, f"alert.{code}.{symbol or 'ALL'}", None)
        log.warning("execution alert", code=code, symbol=symbol, detail=message)

    async def stream_trade(self, kind: str, **fields: Any) -> None:
        """`trade:stream`: real-time data for dashboards, fine to lose at the tail."""
        try:
            await self.redis.xadd(self.keys("trade", "stream"),
                                  {"kind": kind, **{k: str(v) for k, v in fields.items()}},
                                  maxlen=TRADE_STREAM_MAXLEN, approximate=True)
        except Exception as exc:
            log.warning("trade:stream append failed", error=f"{type(exc).__name__}")

    async def _done(self) -> None:
        """The end of an operation: its messages go out, the derived state follows behind."""
        await self.outbox.send_pending()
        self.refresh_soon()

    # --- opening ---------------------------------------------------------------------

    async def on_approved(self, approved: TradeApproved) -> None:
        """An approval from RISK: close, reverse then open, or open. The derived state is
        refreshed after the entry (a reversal's close does not hold it up), before the ack."""
        signal, verdict = approved.signal, approved.verdict
        async with self._approval_locks[signal.symbol]:
            if verdict.close:
                await self._close_symbol(signal.symbol, "signal", reference_price=signal.price)
            else:
                order = verdict.order
                assert order is not None
                opposite = "short" if order.side == "long" else "long"
                # A redelivered reversal whose entry is written already closed its opposite.
                if verdict.reverse and not await self._entry_written(signal.signal_id) \
                        and not await self._close_symbol(signal.symbol, "signal", side=opposite,
                                                         reference_price=order.price):
                    # Opening beside a position still open would hold both sides of a
                    # symbol (the exchange, one-way, would net them): the entry is refused.
                    await self._refuse_entry(signal.signal_id, order,
                                             f"the {opposite} position could not be closed")
                else:
                    await self._open(signal.signal_id, order)
        await self.outbox.send_pending()
        await self.settled()

    async def open_position(self, signal_id: str, plan: OrderPlan) -> PositionRecord | None:
        position = await self._open(signal_id, plan)
        await self._done()
        return position

    async def _open(self, signal_id: str, plan: OrderPlan) -> PositionRecord | None:
        """Place the approved entry exactly once, then protect the position. Idempotent: a
        redelivered approval finds its order and only finishes what is unfinished."""
        cid = client_order_id(signal_id)
        async with self.lock:
            async with self.sessions.begin() as session:
                row = await session.get(OrderRecord, cid)
                if row is None:
                    row = self._entry_row(signal_id, plan, "NEW")
                    session.add(row)
                # Committed SUBMITTED before it is sent, in the transaction that writes it: a
                # crash before the commit leaves nothing, one after it is resolved by asking
                # the exchange. (NEW is left only by earlier versions: never sent.)
                unsent = row.status == "NEW"
                if unsent:
                    row.status = "SUBMITTED"
                # A FILLED entry's position was booked in the same transaction.
                booked = await session.get(PositionRecord, cid) \
                    if row.status == "FILLED" else None
            if unsent:
                fill = await self._send(cid, lambda: self.exchange.create_market_order(
                    symbol=plan.symbol, side=entry_side(plan.side), quantity=plan.quantity,
                    client_order_id=cid, reference_price=plan.price))
            elif row.status in ("SUBMITTED", "UNKNOWN"):  # maybe sent: ask, never resend
                fill = await self._resolve(cid, plan.symbol)
            else:
                fill = None
            position = booked if fill is None else \
                await self._position_from_fill(row, fill, plan)
            if position is not None:
                await self._protect_locked(position)
        return position

    def _entry_row(self, signal_id: str, plan: OrderPlan, status: str,
                   error: str | None = None) -> OrderRecord:
        now = self.now()
        cid = client_order_id(signal_id)
        return OrderRecord(
            client_order_id=cid, signal_id=signal_id, position_id=cid, purpose="entry",
            symbol=plan.symbol, side=entry_side(plan.side).value, type="MARKET",
            quantity=plan.quantity, price=plan.price, stop_price=None, reduce_only=False,
            status=status, filled_quantity=0.0, fee=0.0, error=error, created_at=now,
            updated_at=now)

    async def _entry_written(self, signal_id: str) -> bool:
        async with self.sessions() as session:
            return await session.get(OrderRecord, client_order_id(signal_id)) is not None

    async def _refuse_entry(self, signal_id: str, plan: OrderPlan, error: str) -> None:
        """The approved entry recorded REJECTED, never sent: RISK frees its reservation and
        the trader is told (`order.rejected`)."""
        async with self.lock, self.sessions.begin() as session:
            if await session.get(OrderRecord, client_order_id(signal_id)) is not None:
                return
            row = self._entry_row(signal_id, plan, "REJECTED", error)
            session.add(row)
            self._stage_order(session, row)
        log.warning("entry refused", signal_id=signal_id, symbol=plan.symbol, error=error)

    async def _send(self, cid: str, send: Callable[[], Any]) -> ExchangeOrder | None:
        """Sends an order whose row is committed SUBMITTED."""
        try:
            return await send()
        except OrderRejected as exc:
            await self._rejected(cid, f"{exc.code or ''} {exc}".strip())
            return None
        except ExchangeUnavailable as exc:
            await self._set_status([cid], "UNKNOWN", error=str(exc)[:500])
            return await self._resolve(cid, None)

    async def _resolve(self, cid: str, symbol: str | None) -> ExchangeOrder | None:
        """What became of an order whose answer never came: ask by client id, with backoff."""
        async with self.sessions() as session:
            row = await session.get(OrderRecord, cid)
            assert row is not None
            symbol = symbol or row.symbol
        delay = 0.5
        for attempt in range(RESOLVE_ATTEMPTS):
            try:
                found = await self.exchange.fetch_order(symbol=symbol, client_order_id=cid)
            except ExchangeUnavailable:
                found = None
                if attempt == RESOLVE_ATTEMPTS - 1:
                    raise TransientError(f"order {cid} unresolved: exchange unreachable") from None
            else:
                if found is None and attempt >= NOT_FOUND_CONCLUSIVE_AFTER:
                    # Still unknown to the exchange seconds later: it never received it, so
                    # it is safe to call it not placed.
                    await self._rejected(cid, "not received by the exchange")
                    return None
                if found is not None and (found.status is OrderStatus.FILLED
                                          or found.filled_quantity > 0):
                    return found  # a partly filled order that then expired is still a fill
                if found is not None and found.status in (
                        OrderStatus.REJECTED, OrderStatus.CANCELED, OrderStatus.EXPIRED):
                    await self._rejected(cid, f"exchange says {found.status.value}")
                    return None
            await asyncio.sleep(delay)
            delay *= 2
        raise TransientError(f"order {cid} still not final")

    async def _set_status(self, cids: list[str], status: str, error: str | None = None
                          ) -> None:
        values: dict[str, Any] = {"status": status, "updated_at": self.now()}
        if error:
            values["error"] = error
        async with self.sessions.begin() as session:
            await session.execute(update(OrderRecord)
                                  .where(OrderRecord.client_order_id.in_(cids)).values(values))

    async def _rejected(self, cid: str, error: str) -> None:
        async with self.sessions.begin() as session:
            row = await session.get(OrderRecord, cid)
            assert row is not None
            row.status, row.error, row.updated_at = "REJECTED", error[:500], self.now()
            self._stage_order(session, row)
        log.warning("order rejected", client_order_id=cid, error=error)

    async def _position_from_fill(self, row: OrderRecord, fill: ExchangeOrder, plan: OrderPlan
                                  ) -> PositionRecord:
        """Record the fill of the entry `row` (not FILLED yet: under the lock, once) and the
        position it opened, with their events."""
        cid = fill.client_order_id
        async with self.sessions.begin() as session:
            session.add(row)  # the row read before sending: updated without reading it again
            now = self.now()
            entry = fill.average_price or plan.price
            quantity = fill.filled_quantity
            margin = quantity * entry / plan.leverage
            row.status, row.filled_quantity, row.average_price = "FILLED", quantity, entry
            row.fee, row.exchange_order_id, row.updated_at = fill.fee, fill.exchange_order_id, now
            session.add(FillRecord(client_order_id=cid, symbol=fill.symbol,
                                   side=fill.side.value, quantity=quantity, price=entry,
                                   fee=fill.fee, filled_at=now))
            position = PositionRecord(
                position_id=cid, signal_id=row.signal_id, symbol=plan.symbol, side=plan.side,
                status="open", quantity=quantity, initial_quantity=quantity, entry_price=entry,
                margin=margin, leverage=plan.leverage, stop_loss=plan.stop_loss,
                take_profit=plan.take_profit,
                liquidation_price=position_liquidation_price(plan.symbol, plan.side, quantity,
                                                             entry, margin),
                partial_taken=False, fees=fill.fee, realized_pnl=0.0, opened_at=now)
            session.add(position)
            self._stage_order(session, row)
            self._stage(session, PositionOpened(
                position_id=cid, signal_id=row.signal_id, symbol=plan.symbol, side=plan.side,
                quantity=quantity, entry_price=entry, margin=margin, leverage=plan.leverage,
                stop_loss=plan.stop_loss, take_profit=plan.take_profit,
                liquidation_price=position.liquidation_price, opened_at=now,
            ), f"position.opened.{plan.symbol}", row.signal_id)
        log.info("position opened", position_id=cid, symbol=plan.symbol, side=plan.side,
                 quantity=quantity, entry_price=entry)
        await self.stream_trade("position.opened", position_id=cid, symbol=plan.symbol,
                                side=plan.side, quantity=quantity, entry_price=entry)
        self.books_changed()
        return position

    # --- protection ------------------------------------------------------------------

    async def protect(self, position_id: str) -> None:
        async with self.lock:
            position = await self._still_open(position_id)
            if position is not None:
                await self._protect_locked(position)
        await self._done()

    async def _protect_locked(self, position: PositionRecord) -> None:
        """Every open position has its stop and target resting (idempotent). A stop that
        cannot be placed after the retries closes the position: never left unprotected.
        `position`: current, read or written under the lock (not read again)."""
        orders: list[tuple[str, float, str, bool]] = []
        # Both written in one commit, then sent together. Nothing is flushed before the
        # commit: the exchange calls in between must find the database unlocked (SQLite).
        async with self.sessions.begin() as session:
            with session.no_autoflush:
                session.add(position)
                if position.status != "open":
                    return
                for purpose, price in (("stop_loss", position.stop_loss),
                                       ("take_profit", position.take_profit)):
                    if price is not None:
                        order = await self._trigger_order(session, position, purpose, price)
                        if order is not None:
                            orders.append((purpose, price, *order))
        placed = await _together(*(self._place_trigger(position, *order) for order in orders))
        resting = [cid for (_, _, cid, _), status in zip(orders, placed, strict=True)
                   if status is OrderStatus.OPEN]
        if resting:
            await self._set_status(resting, "OPEN")
        if any(purpose == "stop_loss" and status is None
               for (purpose, *_), status in zip(orders, placed, strict=True)):
            await self._close_locked(position, "unprotected", alert=True)

    async def _trigger_order(self, session: AsyncSession, position: PositionRecord,
                             purpose: str, price: float) -> tuple[str, bool] | None:
        """The protective order of this kind to place, as (client id, never sent); None when
        the right one is resting. A new one is written before it is sent, under a fresh
        client id (Binance refuses a repeated one)."""
        order_type, suffix, attribute = PROTECTIVE[purpose]
        current = getattr(position, attribute)
        row = await session.get(OrderRecord, current) if current is not None else None
        if row is not None and row.status in ("NEW", "SUBMITTED", "UNKNOWN"):
            return current, False  # maybe sent: asked about before it is sent again
        if row is not None and row.status == "OPEN":
            found = await self.exchange.fetch_order(symbol=position.symbol,
                                                    client_order_id=current)
            if found is not None and found.status is OrderStatus.OPEN:
                if _matches(found, price, position.quantity):
                    return None
                # The wrong price or size (a break-even move whose cancel failed): replaced.
                await self.exchange.cancel_order(symbol=position.symbol,
                                                 client_order_id=current)
            row.status = "CANCELED"
        placed = 0 if current is None else await session.scalar(
            select(func.count()).select_from(OrderRecord).where(
                OrderRecord.position_id == position.position_id, OrderRecord.purpose == purpose))
        cid = f"{position.position_id}-{suffix}{placed + 1 if placed else ''}"
        now = self.now()
        session.add(OrderRecord(
            client_order_id=cid, signal_id=position.signal_id, position_id=position.position_id,
            purpose=purpose, symbol=position.symbol, side=exit_side(position.side).value,
            type=order_type.value, quantity=position.quantity, price=None, stop_price=price,
            reduce_only=True, status="NEW", filled_quantity=0.0, fee=0.0, created_at=now,
            updated_at=now))
        setattr(position, attribute, cid)
        return cid, True

    async def _place_trigger(self, position: PositionRecord, purpose: str, price: float,
                             cid: str, unsent: bool) -> OrderStatus | None:
        """With retries: OPEN once resting, FILLED if it already did its job (the fill is
        booked elsewhere), None if it could not be placed."""
        for attempt in range(1, self.settings.protective_order_retries + 1):
            try:
                if not unsent:
                    found = await self.exchange.fetch_order(symbol=position.symbol,
                                                            client_order_id=cid)
                    if found is not None and found.status in (OrderStatus.OPEN,
                                                              OrderStatus.FILLED):
                        return found.status
                await self.exchange.create_trigger_order(
                    symbol=position.symbol, side=exit_side(position.side),
                    quantity=position.quantity, stop_price=price,
                    type=PROTECTIVE[purpose][0], client_order_id=cid)
                return OrderStatus.OPEN
            except (ExchangeUnavailable, OrderRejected) as exc:
                log.warning("protective order not placed", client_order_id=cid,
                            attempt=attempt, error=str(exc))
                unsent = False  # it may have arrived all the same
                await asyncio.sleep(0.2 * attempt)
        return None

    # --- closing ---------------------------------------------------------------------

    async def close_position(self, position_id: str, reason: str, fraction: float = 1.0
                             ) -> Closed | None:
        async with self.lock:
            position = await self._still_open(position_id)
            closed = None if position is None else \
                await self._close_locked(position, reason, fraction=fraction)
        await self._done()
        return closed

    async def _still_open(self, position_id: str) -> PositionRecord | None:
        async with self.sessions() as session:
            position = await session.get(PositionRecord, position_id)
        return position if position is not None and position.status == "open" else None

    async def _close_symbol(self, symbol: str, reason: str, side: str | None = None,
                            reference_price: float | None = None) -> bool:
        """Closes the symbol's positions (of `side`); True if none of them is left open."""
        closed = True
        async with self.lock:
            for position in await self.open_positions(symbol):
                if side is None or position.side == side:
                    closed &= await self._close_locked(
                        position, reason, reference_price=reference_price) is not None
        return closed

    async def _close_locked(self, position: PositionRecord, reason: str, fraction: float = 1.0,
                            alert: bool = False, reference_price: float | None = None
                            ) -> Closed | None:
        """A reduce-only market order for an open position read under the lock (or for a
        fraction of it), committed SUBMITTED before it is sent. `reference_price`: the
        signal's, for a paper exchange that has no tick yet."""
        position_id, symbol = position.position_id, position.symbol
        async with self.sessions.begin() as session:
            count = await session.scalar(select(func.count()).select_from(OrderRecord).where(
                OrderRecord.position_id == position_id, OrderRecord.purpose == "close"))
            cid = f"{position_id}-c{(count or 0) + 1}"
            step = PAPER_PRECISION[symbol].quantity_step if symbol in PAPER_PRECISION \
                else 0.001
            quantity = position.quantity if fraction >= 1 else \
                max(step, round(position.quantity * fraction / step) * step)
            now = self.now()
            order = OrderRecord(
                client_order_id=cid, signal_id=position.signal_id, position_id=position_id,
                purpose="close", symbol=symbol, side=exit_side(position.side).value,
                type="MARKET", quantity=quantity, price=None, stop_price=None,
                reduce_only=True, status="SUBMITTED", filled_quantity=0.0, fee=0.0,
                created_at=now, updated_at=now)
            session.add(order)
        fill = await self._send(cid, lambda: self.exchange.create_market_order(
            symbol=symbol, side=exit_side(position.side), quantity=quantity,
            client_order_id=cid, reduce_only=True, reference_price=reference_price))
        if fill is None:
            return None
        return await self._record_exit(fill, reason, alert=alert, ours=(order, position))

    async def on_exchange_fill(self, fill: ExchangeOrder, reason: str | None = None,
                               position_id: str | None = None) -> Closed | None:
        """A resting stop or target, or a liquidation, filled on the exchange; or (with a
        `position_id`) an exit we did not place, found by reconciliation."""
        async with self.lock:
            closed = await self._record_exit(fill, reason, position_id=position_id)
        await self._done()
        return closed

    async def _record_exit(self, fill: ExchangeOrder, reason: str | None,
                           alert: bool = False, position_id: str | None = None,
                           ours: tuple[OrderRecord, PositionRecord] | None = None
                           ) -> Closed | None:
        """Book an exit fill against its position: PnL (fees included), the remaining
        quantity, the other protective order cancelled on a full close, and the events.
        `ours`: the order we just sent and its position, current (under the lock)."""
        async with self.sessions.begin() as session:
            if ours is not None:
                row, position = ours
                session.add_all(ours)  # updated without reading them again
            else:
                row, position, reason = await self._exit_of(session, fill, reason, position_id)
            if position is None or position.status != "open":
                return None
            now = self.now()
            price = fill.average_price or position.entry_price
            quantity = min(fill.filled_quantity or position.quantity, position.quantity)
            if fill.type is OrderType.LIQUIDATION:
                gross = -position.margin * quantity / position.quantity
            else:
                gross = realized_pnl(position.side, position.entry_price, price, quantity)
            share = quantity / position.quantity
            closed_margin = position.margin * share
            # Each exit carries its share of the entry fee, so the legs of a position (a
            # partial take-profit, then the rest) add up to its result.
            entry = await session.get(OrderRecord, position.position_id)
            entry_fee = entry.fee if entry is not None else 0.0
            pnl = gross - fill.fee - entry_fee * quantity / position.initial_quantity
            if row is not None:
                row.status, row.filled_quantity, row.average_price = "FILLED", quantity, price
                row.fee, row.updated_at = fill.fee, now
                self._stage_order(session, row)
            session.add(FillRecord(client_order_id=fill.client_order_id, symbol=fill.symbol,
                                   side=fill.side.value, quantity=quantity, price=price,
                                   fee=fill.fee, filled_at=now))
            position.realized_pnl += pnl
            position.fees += fill.fee
            remaining = round(position.quantity - quantity, 12)
            full = remaining <= 0
            if full:
                position.status, position.quantity = "closed", 0.0
                position.exit_price, position.closed_at = price, now
                position.close_reason = reason
                initial_margin = position.initial_quantity * position.entry_price \
                    / position.leverage
                position.roe = position.realized_pnl / initial_margin
            else:
                position.quantity = remaining
                position.margin -= closed_margin
            self._stage(session, PositionClosed(
                position_id=position.position_id, symbol=position.symbol, side=position.side,
                quantity=quantity, entry_price=position.entry_price, exit_price=price,
                realized_pnl=pnl, roe=pnl / closed_margin if closed_margin else 0.0,
                reason=reason, remaining_quantity=max(remaining, 0.0), closed_at=now,
            ), f"position.closed.{position.symbol}", position.signal_id)
            if alert:
                self.stage_alert(session, "UNPROTECTED_POSITION_CLOSED", position.symbol,
                                 "the stop could not be placed: the position was closed",
                                 severity="critical", position_id=position.position_id)
            others = [o for o in (position.stop_order_id, position.target_order_id)
                      if o and o != fill.client_order_id] if full else []
            result = Closed(position.position_id, reason, pnl, price)
            symbol = position.symbol
        REALIZED_PNL.inc(pnl)
        await self._cancel(symbol, others)  # cancel-the-other
        log.info("position closed" if full else "position reduced",
                 position_id=result.position_id, reason=reason, pnl=pnl, price=price)
        await self.stream_trade("position.closed" if full else "position.reduced",
                                position_id=result.position_id, symbol=symbol, reason=reason,
                                realized_pnl=pnl, exit_price=price)
        self.books_changed(closed=full)
        return result

    async def _exit_of(self, session: AsyncSession, fill: ExchangeOrder, reason: str | None,
                       position_id: str | None
                       ) -> tuple[OrderRecord | None, PositionRecord | None, str | None]:
        """The order (ours, if it is) and the position an exit fill belongs to, and why."""
        row = await session.get(OrderRecord, fill.client_order_id)
        if position_id is not None:
            return row, await session.get(PositionRecord, position_id), reason
        if fill.type is OrderType.LIQUIDATION:
            position = (await session.scalars(select(PositionRecord).where(
                PositionRecord.symbol == fill.symbol, PositionRecord.status == "open"))).first()
            return row, position, "liquidation"
        if row is None or row.status == "FILLED":
            return row, None, reason  # unknown to us, or already booked
        if reason is None:
            reason = {"stop_loss": "stop_loss", "take_profit": "take_profit"}.get(
                row.purpose, "closed_on_exchange")
        return row, await session.get(PositionRecord, row.position_id), reason

    async def _cancel(self, symbol: str, cids: list[str]) -> list[str]:
        """Cancels resting orders together, recorded CANCELED in one write (returned: the ids
        cancelled); one the exchange could not be reached for keeps its status (reconciliation
        looks again). No `order.updated`: a protective order's resting and cancelling are EXECUTE's
        own business, as its placing is."""

        async def cancel(cid: str) -> bool:
            try:
                await self.exchange.cancel_order(symbol=symbol, client_order_id=cid)
                return True
            except ExchangeUnavailable as exc:
                log.warning("order not cancelled yet", client_order_id=cid, error=str(exc))
                return False

        done = await _together(*(cancel(cid) for cid in cids))
        cancelled = [cid for cid, ok in zip(cids, done, strict=True) if ok]
        if cancelled:
            async with self.sessions.begin() as session:
                await session.execute(
                    update(OrderRecord)
                    .where(OrderRecord.client_order_id.in_(cancelled),
                           OrderRecord.status.not_in(("CANCELED", "FILLED")))
                    .values(status="CANCELED", updated_at=self.now()))
        return cancelled

    async def partial_take_profit(self, position_id: str, fraction: float) -> None:
        """Close `fraction` once, then move the stop to the entry price (break-even) for
        what remains: the old stop is cancelled and a new one placed."""
        async with self.lock:
            position = await self._still_open(position_id)
            if position is not None and await self._close_locked(
                    position, "partial_take_profit", fraction=fraction) is not None:
                await self._stop_to_entry(position)
        await self._done()

    async def _stop_to_entry(self, position: PositionRecord) -> None:
        async with self.sessions.begin() as session:
            session.add(position)  # current: just reduced under the lock
            if position.status != "open":
                return
            old_stop = position.stop_order_id
            position.partial_taken = True
            position.stop_loss = position.entry_price
            symbol = position.symbol
        if old_stop:
            await self._cancel(symbol, [old_stop])
        await self._protect_locked(position)

    async def close_all(self, reason: str, cause: MessagePayload | None = None) -> bool:
        """Close every open position at market (emergency). `cause` goes out first; every
        position is tried even if one fails. True once nothing is left open."""
        if cause is not None:
            async with self.sessions.begin() as session:
                self._stage(session, cause, "account.emergency", None)
            await self.outbox.send_pending()
        async with self.lock:
            for position in await self.open_positions():
                try:
                    await self._close_locked(position, reason)
                except Exception as exc:
                    log.error("emergency close of a position failed", error=str(exc),
                              position_id=position.position_id)
            left = await self.open_positions()
        await self._done()
        return not left

    async def poll_protective_orders(self) -> int:
        """Live mode: the exchange triggers stops and targets itself; ask whether they filled
        (the paper exchange reports its fills on the ticks instead)."""
        booked = 0
        for position in await self.open_positions():
            for order_id in (position.stop_order_id, position.target_order_id):
                if not order_id:
                    continue
                found = await self.exchange.fetch_order(symbol=position.symbol,
                                                        client_order_id=order_id)
                if found is not None and found.status is OrderStatus.FILLED:
                    if await self.on_exchange_fill(found) is not None:
                        booked += 1
                    break
        return booked

    async def alert(self, code: str, symbol: str | None, message: str,
                    severity: str = "warning", **details: Any) -> None:
        async with self.sessions.begin() as session:
            self.stage_alert(session, code, symbol, message, severity, **details)
        await self.outbox.send_pending()

    # --- what BRAIN, the dashboard and the monitor read ------------------------------
    # Derived from the books and refreshed behind them by one task: a burst of changes
    # costs one refresh. A crash loses none of it: start-up refreshes everything.

    def books_changed(self, closed: bool = False) -> None:
        """Positions changed (`closed`: one closed); refreshed once the operation is done."""
        self._stale = True
        self._performance_stale |= closed

    def refresh_soon(self) -> None:
        """Starts the refresh if anything changed since the last one (one runs at a time)."""
        if self._stale and (self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.create_task(self._refresh(), name="execute-refresh")

    async def settled(self) -> None:
        """Returns once the derived state reflects every change made so far, or its refresh
        failed (then the next change or the monitor's housekeeping tries again)."""
        self.refresh_soon()
        if self._refresher is not None:
            await asyncio.shield(self._refresher)

    async def aclose(self) -> None:
        """Stops a refresh in progress (shut-down)."""
        if self._refresher is not None:
            await stop_tasks(self._refresher)

    async def _refresh(self) -> None:
        while self._stale:
            performance = self._performance_stale
            self._stale = self._performance_stale = False
            try:
                await self._mirror_positions()
                if performance:
                    await self.refresh_performance()
            except Exception as exc:
                self._stale = True
                self._performance_stale |= performance
                log.warning("derived state not refreshed now", error=f"{type(exc).__name__}")
                return

    async def _mirror_positions(self) -> None:
        open_positions = await self.open_positions()
        POSITIONS_OPEN.set(len(open_positions))
        key = self.keys("positions", "open")
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                if open_positions:
                    pipe.hset(key, mapping={
                        p.position_id: f'{{"symbol":"{p.symbol}","side":"{p.side}",'
                                       f'"quantity":{p.quantity},"entry_price":{p.entry_price}}}'
                        for p in open_positions})
                await pipe.execute()
        except Exception as exc:
            log.warning("positions not mirrored to Redis", error=f"{type(exc).__name__}")
        if self.on_positions_changed is not None:
            await self.on_positions_changed(open_positions)

    async def refresh_performance(self) -> None:
        """`phoenix95:performance` for BRAIN's Kelly: from every closed position, summed by
        the database."""
        pnl = PositionRecord.realized_pnl
        won = pnl > 0
        async with self.sessions() as session:
            trades, wins, won_sum, lost_sum = (await session.execute(
                select(func.count(), func.sum(case((won, 1), else_=0)),
                       func.sum(case((won, pnl), else_=0.0)),
                       func.sum(case((won, 0.0), else_=-pnl)))
                .where(PositionRecord.status == "closed"))).one()
        losses = trades - (wins or 0)
        performance = {
            "total_trades": trades,
            "win_rate": wins / trades if trades else 0.0,
            "avg_win": won_sum / wins if wins else 0.0,
            "avg_loss": lost_sum / losses if losses else 0.0,
        }
        try:
            await self.redis.hset(self.keys("performance"), mapping=performance)
        except Exception as exc:
            log.warning("performance not written to Redis", error=f"{type(exc).__name__}")

    async def open_positions(self, symbol: str | None = None) -> list[PositionRecord]:
        query = select(PositionRecord).where(PositionRecord.status == "open")
        if symbol is not None:
            query = query.where(PositionRecord.symbol == symbol)
        async with self.sessions() as session:
            return list((await session.scalars(query)).all())
