"""Reconciliation with the exchange (execute.md): at start-up, before consuming, and every
RECONCILE_INTERVAL_S — the same code path. On a consistent account it changes nothing."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from sqlalchemy import select

from services.execute.engine import (
    CLIENT_ID_PREFIX,
    PROTECTIVE,
    ExecutionEngine,
    position_liquidation_price,
)
from services.execute.exchange.base import ExchangeOrder, OrderSide, OrderStatus, OrderType
from services.execute.models import OrderRecord, PositionRecord
from shared.contracts import PositionOpened
from shared.instruments import PAPER_PRECISION, protective_prices
from shared.observability.logging import get_logger

log = get_logger(__name__)

IN_FLIGHT_GRACE = timedelta(minutes=10)
RESTING_TYPES = {order_type for order_type, _, _ in PROTECTIVE.values()}
# What a protective order of ours may still be doing on the exchange.
NOT_FINAL = ("NEW", "SUBMITTED", "UNKNOWN", "OPEN")


async def reconcile(engine: ExecutionEngine) -> dict[str, int]:
    """Returns what it did, by kind (all zeros on a consistent account)."""
    done = {"adopted": 0, "closed_on_exchange": 0, "quantity_corrected": 0,
            "protected": 0, "orders_resolved": 0, "strays_cancelled": 0}
    # Both snapshots under the engine's lock: no fill can be booked between them, so a
    # position just opened is never taken for one gone from the exchange.
    async with engine.lock:
        on_exchange = {p.symbol: p for p in await engine.exchange.fetch_positions()}
        ours = {p.symbol: p for p in await engine.open_positions()}
        in_flight = await _entries_in_flight(engine)

    for symbol, theirs in on_exchange.items():
        mine = ours.get(symbol)
        if mine is None and symbol in in_flight:
            # An entry sent before a crash: its approval, never acked, comes back and books
            # it under its own id. Adopting it here would count it twice.
            continue
        if mine is None:
            await _adopt(engine, theirs)
            done["adopted"] += 1
        elif abs(mine.quantity - theirs.quantity) > 1e-12:
            async with engine.lock:
                async with engine.sessions.begin() as session:
                    row = await session.get(PositionRecord, mine.position_id)
                    assert row is not None
                    previous, row.quantity = row.quantity, theirs.quantity
                    engine.stage_alert(session, "QUANTITY_CORRECTED", symbol,
                                       f"{symbol}: {previous} in the database, {theirs.quantity} "
                                       "on the exchange: corrected",
                                       position_id=row.position_id)
            done["quantity_corrected"] += 1
    for symbol, mine in ours.items():
        if symbol not in on_exchange:
            await _gone_from_exchange(engine, mine)
            done["closed_on_exchange"] += 1

    # One read of what rests on the exchange (on Binance, per symbol) for both checks below;
    # what it does not show is asked about order by order.
    resting = {o.client_order_id: o.symbol for o in await engine.exchange.fetch_open_orders()
               if o.type in RESTING_TYPES}
    for position in await engine.open_positions():
        if await _missing_protection(engine, position, resting):
            await engine.protect(position.position_id)
            done["protected"] += 1

    done["orders_resolved"] = await _resolve_pending(engine)
    done["strays_cancelled"] = await _cancel_strays(engine, resting)
    if any(done.values()):
        log.warning("reconciliation changed the books", **done)
        engine.books_changed()
    await engine.outbox.send_pending()
    await engine.settled()
    return done


async def _entries_in_flight(engine: ExecutionEngine) -> set[str]:
    """Symbols with an entry order sent but not booked, recently enough that its approval
    is still coming back (older ones are adopted like any unknown position)."""
    since = engine.now() - IN_FLIGHT_GRACE
    async with engine.sessions() as session:
        return set((await session.scalars(select(OrderRecord.symbol).where(
            OrderRecord.purpose == "entry",
            OrderRecord.status.in_(("NEW", "SUBMITTED", "UNKNOWN")),
            OrderRecord.created_at > since))).all())


async def _adopt(engine: ExecutionEngine, theirs) -> None:  # type: ignore[no-untyped-def]
    """An exchange position the database does not know: adopted, protected, announced."""
    now = engine.now()
    position_id = f"ext-{theirs.symbol}-{int(now.timestamp())}"
    precision = PAPER_PRECISION.get(theirs.symbol)
    stop, target = protective_prices(theirs.side, theirs.entry_price,
                                     engine.settings.stop_loss_pct,
                                     engine.settings.take_profit_pct,
                                     precision.price_tick if precision else None)
    margin = theirs.isolated_margin or theirs.quantity * theirs.entry_price / theirs.leverage
    liquidation = theirs.liquidation_price or position_liquidation_price(
        theirs.symbol, theirs.side, theirs.quantity, theirs.entry_price, margin)
    async with engine.lock:
        async with engine.sessions.begin() as session:
            session.add(PositionRecord(
                position_id=position_id, signal_id=None, symbol=theirs.symbol,
                side=theirs.side, status="open", quantity=theirs.quantity,
                initial_quantity=theirs.quantity, entry_price=theirs.entry_price, margin=margin,
                leverage=theirs.leverage, stop_loss=stop, take_profit=target,
                liquidation_price=liquidation, partial_taken=False, fees=0.0,
                realized_pnl=0.0, opened_at=now))
            engine._stage(session, PositionOpened(
                position_id=position_id, symbol=theirs.symbol, side=theirs.side,
                quantity=theirs.quantity, entry_price=theirs.entry_price, margin=margin,
                leverage=theirs.leverage, stop_loss=stop, take_profit=target,
                liquidation_price=liquidation, opened_at=now,
            ), f"position.opened.{theirs.symbol}", None)
            engine.stage_alert(session, "EXTERNAL_POSITION_ADOPTED", theirs.symbol,
                               f"a {theirs.side} {theirs.quantity} {theirs.symbol} position on "
                               "the exchange was unknown: adopted and protected",
                               position_id=position_id)


async def _gone_from_exchange(engine: ExecutionEngine, mine: PositionRecord) -> None:
    """A database position the exchange no longer has: closed as `closed_on_exchange`,
    booked from its protective order's fill when one filled."""
    for order_id in (mine.stop_order_id, mine.target_order_id):
        if order_id:
            found = await engine.exchange.fetch_order(symbol=mine.symbol,
                                                      client_order_id=order_id)
            if found is not None and found.status is OrderStatus.FILLED:
                await engine.on_exchange_fill(found)
                return
    exit_side = OrderSide.SELL if mine.side == "long" else OrderSide.BUY
    # No fill to go by: booked flat at the entry price, and said so.
    await engine.on_exchange_fill(ExchangeOrder(
        client_order_id=f"{mine.position_id}-gone", exchange_order_id="", symbol=mine.symbol,
        side=exit_side, type=OrderType.MARKET, status=OrderStatus.FILLED,
        quantity=mine.quantity, filled_quantity=mine.quantity, average_price=mine.entry_price,
        stop_price=None, reduce_only=True, fee=0.0, updated_at=engine.now()),
        reason="closed_on_exchange", position_id=mine.position_id)


async def _missing_protection(engine: ExecutionEngine, position: PositionRecord,
                              resting: dict[str, str]) -> bool:
    for order_id, price in ((position.stop_order_id, position.stop_loss),
                            (position.target_order_id, position.take_profit)):
        if price is None or order_id in resting:
            continue
        if order_id is None:
            return True
        found = await engine.exchange.fetch_order(symbol=position.symbol,
                                                  client_order_id=order_id)
        if found is None or found.status is not OrderStatus.OPEN:
            if found is not None and found.status is OrderStatus.FILLED:
                await engine.on_exchange_fill(found)
                return False
            async with engine.sessions.begin() as session:
                row = await session.get(OrderRecord, order_id)
                if row is not None:
                    row.status = "CANCELED"  # gone: the next one gets a fresh client id
            return True
    return False


async def _resolve_pending(engine: ExecutionEngine) -> int:
    """Closing and protective orders left SUBMITTED or UNKNOWN: asked by client id."""
    async with engine.sessions() as session:
        pending = (await session.scalars(select(OrderRecord).where(
            OrderRecord.status.in_(("SUBMITTED", "UNKNOWN")),
            OrderRecord.purpose != "entry"))).all()
    for row in pending:
        found = await engine.exchange.fetch_order(symbol=row.symbol,
                                                  client_order_id=row.client_order_id)
        if found is not None and found.status is OrderStatus.FILLED:
            await engine.on_exchange_fill(found)
        elif found is None or found.status is not OrderStatus.OPEN:
            await engine._set_status([row.client_order_id], "CANCELED",
                                     error="not on the exchange")
        else:
            await engine._set_status([row.client_order_id], "OPEN")
    return len(pending)


async def _cancel_strays(engine: ExecutionEngine, resting: dict[str, str]) -> int:
    """Stops and targets that protect no open position are cancelled: one left resting on a
    flat symbol could trigger later and trade. They are ours recorded for a position no longer
    open (a cancel failed as it closed), or ours resting on the exchange that no open position
    holds (a `p95-` id the database does not know, say). Ours the exchange no longer has are
    recorded CANCELED as well; one that filled is recorded FILLED (its fill, against a later
    position, is left to the quantity check); orders placed by others are left alone. Returns
    how many were cancelled. `resting`: read before the lock; each candidate is asked about
    again under it, so an order cancelled or replaced meanwhile is not taken for a stray."""
    async with engine.lock:  # nothing placed, filled or closed meanwhile
        guarded = {cid for position in await engine.open_positions()
                   for cid in (position.stop_order_id, position.target_order_id) if cid}
        async with engine.sessions() as session:
            orphaned = {row.client_order_id: row.symbol for row in (await session.scalars(
                select(OrderRecord)
                .outerjoin(PositionRecord, PositionRecord.position_id == OrderRecord.position_id)
                .where(OrderRecord.purpose.in_(tuple(PROTECTIVE)),
                       OrderRecord.status.in_(NOT_FINAL),
                       PositionRecord.status.is_distinct_from("open")))).all()}
            known = set((await session.scalars(select(OrderRecord.client_order_id).where(
                OrderRecord.client_order_id.in_(list(resting))))).all()) if resting else set()
        candidates = orphaned | {cid: symbol for cid, symbol in resting.items()
                                 if cid not in guarded
                                 and (cid in known or cid.startswith(CLIENT_ID_PREFIX))}
        strays: defaultdict[str, list[str]] = defaultdict(list)
        gone: list[str] = []
        for cid, symbol in candidates.items():
            found = await engine.exchange.fetch_order(symbol=symbol, client_order_id=cid)
            status = found.status if found is not None else None
            if status is OrderStatus.FILLED:
                log.warning("a protective order of no open position filled",
                            client_order_id=cid, symbol=symbol)
                if cid in orphaned:  # recorded, so not asked about again every pass
                    await engine._set_status([cid], "FILLED", error="filled with no position")
            elif status is OrderStatus.OPEN:
                strays[symbol].append(cid)
            elif cid in orphaned:
                gone.append(cid)
        cancelled = len(gone)
        if gone:
            await engine._set_status(gone, "CANCELED", error="not on the exchange")
        for symbol, cids in strays.items():
            log.warning("cancelling protective orders of no open position", symbol=symbol,
                        client_order_ids=cids)
            cancelled += len(await engine._cancel(symbol, cids))
    return cancelled
