"""Reconciliation and stray protective orders: a stop or target left resting on the exchange
for no open position (its cancel failed when the position closed, or the database never knew
it) is cancelled and recorded CANCELED (paper exchange, PostgreSQL and SQLite, real
broker and Redis)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.execute.exchange.base import ExchangeUnavailable, OrderSide, OrderStatus, OrderType
from services.execute.models import OrderRecord, PaperOrder
from services.execute.reconcile import reconcile
from tests.integration.execute_fixtures import count, plan


async def statuses(execute, *cids: str) -> dict[str, str]:
    async with execute.app.state.engine.sessions() as session:
        rows = (await session.scalars(select(OrderRecord).where(
            OrderRecord.client_order_id.in_(cids)))).all()
    return {row.client_order_id: row.status for row in rows}


async def close_with_cancels_failing(engine, position_id: str) -> None:
    """Closes the position while the exchange cannot be reached for the cancels: its stop
    and target stay resting (and OPEN in our books)."""
    exchange = engine.exchange
    cancel = exchange.cancel_order

    async def unreachable(**order: Any) -> None:
        raise ExchangeUnavailable("timed out")

    exchange.cancel_order = unreachable
    try:
        assert await engine.close_position(position_id, "manual") is not None
    finally:
        exchange.cancel_order = cancel


async def test_a_closed_positions_stop_and_target_left_resting_are_cancelled(
        make_execute, database_url):
    async with make_execute(database_url=database_url) as execute:
        engine = execute.app.state.engine
        exchange = engine.exchange
        await exchange.on_tick("BTCUSDT", 43123.5, 43123.5)
        await exchange.on_tick("ETHUSDT", 2500.0, 2500.0)
        btc = await engine.open_position("stray-btc", plan())
        eth = await engine.open_position("stray-eth", plan("ETHUSDT", 2500.0, 1.6))
        assert btc is not None and eth is not None
        strays = (f"{btc.position_id}-sl", f"{btc.position_id}-tp")
        kept = {f"{eth.position_id}-sl", f"{eth.position_id}-tp"}
        await close_with_cancels_failing(engine, btc.position_id)
        assert [p["position_id"] for p in await execute.positions("closed")] \
            == [btc.position_id]
        resting = {o.client_order_id for o in await exchange.fetch_open_orders()}
        assert resting == {*strays, *kept}
        assert await statuses(execute, *strays) == dict.fromkeys(strays, "OPEN")

        done = await reconcile(engine)

        resting = {o.client_order_id for o in await exchange.fetch_open_orders()}
        assert resting == kept  # the open ETH position keeps its protection
        assert await statuses(execute, *strays) == dict.fromkeys(strays, "CANCELED")
        assert await statuses(execute, *kept) == dict.fromkeys(kept, "OPEN")
        assert done == {"adopted": 0, "closed_on_exchange": 0, "quantity_corrected": 0,
                        "protected": 0, "orders_resolved": 0, "strays_cancelled": 2}
        # Consistent now: the next pass changes nothing.
        assert set((await reconcile(engine)).values()) == {0}


async def test_a_resting_order_of_ours_for_no_position_is_cancelled_and_others_left_alone(
        make_execute, database_url):
    """A `p95-` stop the database has no record of (a restored database, say) is ours and
    protects nothing: cancelled. An order placed by hand on the exchange is not ours."""
    async with make_execute(database_url=database_url) as execute:
        engine = execute.app.state.engine
        exchange = engine.exchange
        await exchange.on_tick("BTCUSDT", 43123.5, 43123.5)
        ours, by_hand = "p95-0123456789abcdef01234567-sl", "by-hand-stop"
        for cid in (ours, by_hand):
            await exchange.create_trigger_order(
                symbol="BTCUSDT", side=OrderSide.SELL, quantity=0.092, stop_price=42261.0,
                type=OrderType.STOP_MARKET, client_order_id=cid)

        done = await reconcile(engine)

        assert {o.client_order_id for o in await exchange.fetch_open_orders()} == {by_hand}
        found = await exchange.fetch_order(symbol="BTCUSDT", client_order_id=ours)
        assert found is not None and found.status is OrderStatus.CANCELED
        assert done["strays_cancelled"] == 1
        assert await count(execute, OrderRecord) == 0  # no record invented for it
        assert set((await reconcile(engine)).values()) == {0}


async def test_a_closed_positions_stop_gone_from_the_exchange_is_recorded_cancelled(
        make_execute, database_url):
    """Recorded resting, but the exchange let it go (it expired: no position to reduce):
    our books say so, instead of asking about it at every pass."""
    async with make_execute(database_url=database_url) as execute:
        engine = execute.app.state.engine
        exchange = engine.exchange
        await exchange.on_tick("BTCUSDT", 43123.5, 43123.5)
        position = await engine.open_position("gone-btc", plan())
        assert position is not None
        stop, target = f"{position.position_id}-sl", f"{position.position_id}-tp"
        await close_with_cancels_failing(engine, position.position_id)
        await exchange.on_tick("BTCUSDT", 42000.0, 42000.0)  # the stop triggers: expires
        assert await count(execute, PaperOrder, PaperOrder.client_order_id == stop,
                           PaperOrder.status == "expired") == 1

        done = await reconcile(engine)

        assert {o.client_order_id for o in await exchange.fetch_open_orders()} == set()
        assert await statuses(execute, stop, target) == {stop: "CANCELED",
                                                         target: "CANCELED"}
        assert done["strays_cancelled"] == 2
        assert set((await reconcile(engine)).values()) == {0}
