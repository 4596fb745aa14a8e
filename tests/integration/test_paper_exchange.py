"""The paper exchange on a real database (SQLite; one round trip on PostgreSQL): fills with
slippage and fees, margin, reduce-only closes, protective orders on the mark price,
liquidation, duplicate client ids, restarts, and ticks that cost nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import event

from services.execute.exchange.base import (
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderType,
)
from services.execute.exchange.paper import PaperExchange
from services.execute.settings import ExecuteSettings
from shared.db import create_engine, session_factory
from shared.liquidation import liquidation_price

BUY, SELL = OrderSide.BUY, OrderSide.SELL
STOP, TARGET = OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-12, abs=1e-9)


def settings(**overrides: object) -> ExecuteSettings:
    return ExecuteSettings(_env_file=None, **overrides)


@asynccontextmanager
async def paper(url: str, statements: list[str] | None = None,
                **overrides: object) -> AsyncIterator[PaperExchange]:
    """A started PaperExchange on `url`; every SQL statement it sends is appended to
    `statements` when given."""
    engine = create_engine(url)
    if statements is not None:
        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _count(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            statements.append(statement)

    exchange = PaperExchange(settings(**overrides), session_factory(engine))
    await exchange.start(["BTCUSDT", "ETHUSDT"], 20)
    try:
        yield exchange
    finally:
        await exchange.close()
        await engine.dispose()


async def open_long(exchange: PaperExchange, quantity: float = 0.1, price: float = 50_000.0,
                    client_order_id: str = "p95-entry") -> None:
    await exchange.on_tick("BTCUSDT", price, price)
    await exchange.create_market_order(symbol="BTCUSDT", side=BUY, quantity=quantity,
                                       client_order_id=client_order_id)


async def test_a_long_fills_with_slippage_and_fee(sqlite_url):
    async with paper(sqlite_url) as exchange:
        assert (await exchange.fetch_balance()).wallet_balance == 10_000.0
        await exchange.on_tick("BTCUSDT", 50_000.0, 50_001.0)
        order = await exchange.create_market_order(
            symbol="BTCUSDT", side=BUY, quantity=0.1004, client_order_id="p95-a")
        positions = await exchange.fetch_positions()
        balance = await exchange.fetch_balance()

    # 0.1004 floors to the 0.001 step; buy pays 50 000 × 1.0002; fee 0.04 % of 5001.
    assert (order.status, order.type, order.side) == (OrderStatus.FILLED, OrderType.MARKET, BUY)
    assert (order.quantity, order.filled_quantity, order.average_price) == (0.1, 0.1, 50_010.0)
    assert order.fee == approx(2.0004)
    assert order.reduce_only is False
    [position] = positions
    assert (position.symbol, position.side, position.quantity) == ("BTCUSDT", "long", 0.1)
    assert position.entry_price == 50_010.0
    assert position.leverage == 20
    assert position.isolated_margin == approx(250.05)
    assert position.liquidation_price == approx((250.05 - 5001.0) / (0.1 * 0.004 - 0.1))
    assert position.mark_price == 50_001.0
    assert position.unrealized_pnl == approx((50_001.0 - 50_010.0) * 0.1)
    assert balance.wallet_balance == approx(10_000 - 2.0004)
    assert balance.equity == approx(10_000 - 2.0004 - 0.9)


async def test_a_short_fills_below_the_last_price_and_before_any_tick_at_the_reference(
        sqlite_url):
    async with paper(sqlite_url) as exchange:
        order = await exchange.create_market_order(
            symbol="ETHUSDT", side=SELL, quantity=1, client_order_id="p95-s",
            reference_price=2_500.0)
        [position] = await exchange.fetch_positions()
        with pytest.raises(OrderRejected, match="no price for BTCUSDT"):
            await exchange.create_market_order(symbol="BTCUSDT", side=BUY, quantity=0.01,
                                               client_order_id="p95-no-price")
    assert order.average_price == 2_499.5  # 2500 × (1 − 0.0002)
    assert order.fee == approx(0.0004 * 2_499.5)
    assert (position.side, position.quantity, position.entry_price) == ("short", 1.0, 2_499.5)
    assert position.isolated_margin == approx(2_499.5 / 20)


async def test_insufficient_margin_is_rejected_as_binance_does(sqlite_url):
    async with paper(sqlite_url) as exchange:
        await exchange.on_tick("BTCUSDT", 50_000.0, None)
        with pytest.raises(OrderRejected) as rejected:
            # 4 BTC: margin 10 002 > 10 000
            await exchange.create_market_order(symbol="BTCUSDT", side=BUY, quantity=4,
                                               client_order_id="p95-big")
        # margin + fee must fit: 3.99 BTC needs 9 976.99 + 79.82 > 10 000
        with pytest.raises(OrderRejected) as with_fee:
            await exchange.create_market_order(symbol="BTCUSDT", side=BUY, quantity=3.99,
                                               client_order_id="p95-big-2")
        # the margin of an open position is not available to another one
        await exchange.create_market_order(symbol="BTCUSDT", side=BUY, quantity=3,
                                           client_order_id="p95-3")
        await exchange.on_tick("ETHUSDT", 2_500.0, None)
        with pytest.raises(OrderRejected) as second:
            await exchange.create_market_order(symbol="ETHUSDT", side=SELL, quantity=20,
                                               client_order_id="p95-eth")
        positions = await exchange.fetch_positions()
        rejected_order = await exchange.fetch_order(symbol="BTCUSDT",
                                                    client_order_id="p95-big")
    assert rejected.value.code == with_fee.value.code == second.value.code == "-2019"
    assert "Margin is insufficient" in str(rejected.value)
    assert [(p.symbol, p.quantity) for p in positions] == [("BTCUSDT", 3.0)]
    assert rejected_order is None  # Binance keeps no rejected order either


async def test_reduce_only_close_realises_pnl_and_pays_the_fee(sqlite_url):
    async with paper(sqlite_url) as exchange:
        await open_long(exchange)
        await exchange.on_tick("BTCUSDT", 51_000.0, 51_000.0)
        half = await exchange.create_market_order(
            symbol="BTCUSDT", side=SELL, quantity=0.05, client_order_id="p95-half",
            reduce_only=True)
        [position] = await exchange.fetch_positions()
        rest = await exchange.create_market_order(
            symbol="BTCUSDT", side=SELL, quantity=1, client_order_id="p95-rest",
            reduce_only=True)
        positions = await exchange.fetch_positions()
        balance = await exchange.fetch_balance()
        with pytest.raises(OrderRejected) as nothing_to_reduce:
            await exchange.create_market_order(symbol="BTCUSDT", side=SELL, quantity=0.1,
                                               client_order_id="p95-none", reduce_only=True)

    exit_price = 50_989.8  # 51 000 × (1 − 0.0002)
    assert half.average_price == rest.average_price == exit_price
    assert half.filled_quantity == 0.05
    assert half.fee == approx(0.0004 * exit_price * 0.05)
    assert (position.quantity, position.isolated_margin) == (0.05, approx(125.025))
    assert rest.quantity == 1.0 and rest.filled_quantity == 0.05  # capped at the position
    assert positions == []
    pnl = (exit_price - 50_010.0) * 0.1  # 97.98
    fees = 2.0004 + 0.0004 * exit_price * 0.1
    assert balance.wallet_balance == approx(10_000 + pnl - fees)
    assert balance.wallet_balance == approx(10_093.940008)
    assert balance.unrealized_pnl == 0.0
    assert nothing_to_reduce.value.code == "-2022"


async def test_one_way_mode_an_opposite_order_flips_and_reduce_only_never_does(sqlite_url):
    async with paper(sqlite_url, paper_slippage_bps=0, paper_taker_fee=0) as exchange:
        await open_long(exchange, quantity=0.1)
        await exchange.on_tick("BTCUSDT", 49_000.0, None)
        await exchange.create_market_order(symbol="BTCUSDT", side=SELL, quantity=0.3,
                                           client_order_id="p95-flip")
        [flipped] = await exchange.fetch_positions()
        balance = await exchange.fetch_balance()
        await exchange.create_market_order(symbol="BTCUSDT", side=SELL, quantity=0.1,
                                           client_order_id="p95-more")
        [increased] = await exchange.fetch_positions()
        await exchange.create_market_order(symbol="BTCUSDT", side=BUY, quantity=0.5,
                                           client_order_id="p95-ro", reduce_only=True)
        assert await exchange.fetch_positions() == []

    assert (flipped.side, flipped.quantity, flipped.entry_price) == ("short", 0.2, 49_000.0)
    assert flipped.isolated_margin == approx(0.2 * 49_000 / 20)
    assert balance.wallet_balance == approx(10_000 - 100.0)  # (49 000 − 50 000) × 0.1
    assert (increased.quantity, increased.entry_price) == (0.3, 49_000.0)


async def test_a_take_profit_triggers_on_the_mark_and_the_stop_then_expires(sqlite_url):
    async with paper(sqlite_url) as exchange:
        await open_long(exchange)
        stop = await exchange.create_trigger_order(
            symbol="BTCUSDT", side=SELL, quantity=0.1, stop_price=49_000.0, type=STOP,
            client_order_id="p95-entry-sl")
        target = await exchange.create_trigger_order(
            symbol="BTCUSDT", side=SELL, quantity=0.1, stop_price=51_000.0, type=TARGET,
            client_order_id="p95-entry-tp")
        assert stop.status == target.status == OrderStatus.OPEN
        assert stop.reduce_only and target.reduce_only

        # the last price crossing means nothing; the mark not quite there either
        assert await exchange.on_tick("BTCUSDT", 51_500.0, 50_999.9) == []
        assert await exchange.on_tick("BTCUSDT", 48_000.0, 49_000.1) == []
        [filled] = await exchange.on_tick("BTCUSDT", 51_020.0, 51_000.0)
        after_target = await exchange.fetch_open_orders("BTCUSDT")
        # the exchange leaves the stop resting (cancelling it is EXECUTE's job)...
        assert [o.client_order_id for o in after_target] == ["p95-entry-sl"]
        # ...and when it triggers with no position left, it expires
        assert await exchange.on_tick("BTCUSDT", 48_900.0, 48_950.0) == []
        expired = await exchange.fetch_order(symbol="BTCUSDT", client_order_id="p95-entry-sl")
        assert await exchange.fetch_open_orders() == []
        balance = await exchange.fetch_balance()

    assert (filled.client_order_id, filled.type, filled.status) == (
        "p95-entry-tp", TARGET, OrderStatus.FILLED)
    # the last price, not the mark: 51 020 × (1 − 0.0002) = 51 009.796, on the 0.1 tick
    assert filled.average_price == approx(51_009.8)
    assert filled.filled_quantity == 0.1
    assert filled.fee == approx(0.0004 * 51_009.8 * 0.1)
    assert (expired.status, expired.filled_quantity) == (OrderStatus.EXPIRED, 0.0)
    assert balance.wallet_balance == approx(
        10_000 - 2.0004 + (51_009.8 - 50_010.0) * 0.1 - 0.0004 * 51_009.8 * 0.1)


async def test_a_short_stop_triggers_when_the_mark_rises_to_it(sqlite_url):
    async with paper(sqlite_url) as exchange:
        await exchange.on_tick("BTCUSDT", 50_000.0, 50_000.0)
        await exchange.create_market_order(symbol="BTCUSDT", side=SELL, quantity=0.2,
                                           client_order_id="p95-short")
        await exchange.create_trigger_order(
            symbol="BTCUSDT", side=BUY, quantity=0.5, stop_price=51_000.0, type=STOP,
            client_order_id="p95-short-sl")
        await exchange.create_trigger_order(
            symbol="BTCUSDT", side=BUY, quantity=0.2, stop_price=49_000.0, type=TARGET,
            client_order_id="p95-short-tp")
        assert await exchange.on_tick("BTCUSDT", 51_200.0, 50_999.0) == []
        [stopped] = await exchange.on_tick("BTCUSDT", 51_100.0, 51_000.0)
        positions = await exchange.fetch_positions()
        balance = await exchange.fetch_balance()
        still_open = await exchange.fetch_open_orders()

    entry, exit_price = 49_990.0, 51_110.2  # sell 50 000 × 0.9998; buy 51 100 × 1.0002
    assert (stopped.client_order_id, stopped.type) == ("p95-short-sl", STOP)
    assert stopped.quantity == 0.5 and stopped.filled_quantity == 0.2  # the position's size
    assert stopped.average_price == approx(exit_price)
    assert positions == []
    fees = 0.0004 * (entry + exit_price) * 0.2
    assert balance.wallet_balance == approx(10_000 - (exit_price - entry) * 0.2 - fees)
    assert [o.client_order_id for o in still_open] == ["p95-short-tp"]


async def test_a_protective_order_that_would_trigger_at_once_is_rejected(sqlite_url):
    async with paper(sqlite_url) as exchange:
        await open_long(exchange)
        with pytest.raises(OrderRejected) as rejected:
            await exchange.create_trigger_order(
                symbol="BTCUSDT", side=SELL, quantity=0.1, stop_price=50_100.0, type=STOP,
                client_order_id="p95-bad-sl")
    assert rejected.value.code == "-2021"


async def test_liquidation_at_the_liquidation_price_loses_the_margin(sqlite_url):
    async with paper(sqlite_url) as exchange:
        await open_long(exchange)
        await exchange.create_trigger_order(
            symbol="BTCUSDT", side=SELL, quantity=0.1, stop_price=47_000.0, type=STOP,
            client_order_id="p95-entry-sl")
        [position] = await exchange.fetch_positions()
        expected = liquidation_price("long", 0.1, 50_010.0, 250.05, 0.004, 0.0)
        assert position.liquidation_price == approx(expected)
        assert expected == approx(47_700.30120481928)

        assert await exchange.on_tick("BTCUSDT", 47_600.0, 47_710.0) == []
        [liquidation] = await exchange.on_tick("BTCUSDT", 47_500.0, 47_650.0)
        positions = await exchange.fetch_positions()
        balance = await exchange.fetch_balance()
        stop = await exchange.fetch_order(symbol="BTCUSDT", client_order_id="p95-entry-sl")
        fetched = await exchange.fetch_order(symbol="BTCUSDT",
                                             client_order_id="liq-BTCUSDT-1")

    assert (liquidation.client_order_id, liquidation.type, liquidation.side) == (
        "liq-BTCUSDT-1", OrderType.LIQUIDATION, SELL)
    assert liquidation.status == OrderStatus.FILLED
    assert liquidation.filled_quantity == 0.1
    assert liquidation.average_price == approx(expected)
    assert liquidation.fee == 0.0
    assert fetched == liquidation
    assert positions == []
    assert balance.wallet_balance == approx(10_000 - 2.0004 - 250.05)
    # Binance cancels the open orders of a position it liquidates
    assert stop.status == OrderStatus.CANCELED


async def test_a_short_is_liquidated_when_the_mark_rises(sqlite_url):
    async with paper(sqlite_url, paper_slippage_bps=0, paper_taker_fee=0) as exchange:
        await exchange.on_tick("ETHUSDT", 2_000.0, 2_000.0)
        await exchange.create_market_order(symbol="ETHUSDT", side=SELL, quantity=1,
                                           client_order_id="p95-eth")
        expected = liquidation_price("short", 1, 2_000.0, 100.0, 0.004, 0.0)
        [liquidation] = await exchange.on_tick("ETHUSDT", 2_100.0, expected)
        balance = await exchange.fetch_balance()
    assert (liquidation.side, liquidation.average_price) == (BUY, approx(expected))
    assert balance.wallet_balance == approx(10_000 - 100.0)


async def test_a_duplicate_client_order_id_is_rejected(sqlite_url):
    async with paper(sqlite_url) as exchange:
        await open_long(exchange, client_order_id="p95-dup")
        with pytest.raises(OrderRejected) as market:
            await exchange.create_market_order(symbol="BTCUSDT", side=BUY, quantity=0.1,
                                               client_order_id="p95-dup")
        await exchange.create_trigger_order(
            symbol="BTCUSDT", side=SELL, quantity=0.1, stop_price=49_000.0, type=STOP,
            client_order_id="p95-dup-sl")
        with pytest.raises(OrderRejected) as trigger:
            await exchange.create_trigger_order(
                symbol="BTCUSDT", side=SELL, quantity=0.1, stop_price=48_000.0, type=STOP,
                client_order_id="p95-dup-sl")
        [position] = await exchange.fetch_positions()
        [order] = await exchange.fetch_open_orders()
    assert market.value.code == trigger.value.code == "-4116"
    assert "ClientOrderId is duplicated" in str(market.value)
    assert position.quantity == 0.1  # not bought twice
    assert order.stop_price == 49_000.0


async def test_concurrent_orders_are_serialised(sqlite_url):
    async with paper(sqlite_url) as exchange:
        await exchange.on_tick("BTCUSDT", 50_000.0, None)

        async def buy(client_order_id: str) -> object:
            try:
                return await exchange.create_market_order(
                    symbol="BTCUSDT", side=BUY, quantity=2.4, client_order_id=client_order_id)
            except OrderRejected as rejected:
                return rejected.code

        # each needs 6 000 of margin: only one fits; the same id twice fills once
        outcomes = await asyncio.gather(buy("p95-x"), buy("p95-y"), buy("p95-x"))
        [position] = await exchange.fetch_positions()
    assert sorted(o if isinstance(o, str) else "filled" for o in outcomes) == [
        "-2019", "-4116", "filled"]
    assert position.quantity == 2.4


async def test_cancel_fetch_and_unknown_orders(sqlite_url):
    async with paper(sqlite_url) as exchange:
        await open_long(exchange)
        await exchange.create_trigger_order(
            symbol="BTCUSDT", side=SELL, quantity=0.1, stop_price=49_000.0, type=STOP,
            client_order_id="p95-sl")
        await exchange.cancel_order(symbol="BTCUSDT", client_order_id="p95-sl")
        await exchange.cancel_order(symbol="BTCUSDT", client_order_id="p95-sl")  # again
        await exchange.cancel_order(symbol="BTCUSDT", client_order_id="p95-entry")  # filled
        await exchange.cancel_order(symbol="BTCUSDT", client_order_id="never-sent")
        cancelled = await exchange.fetch_order(symbol="BTCUSDT", client_order_id="p95-sl")
        entry = await exchange.fetch_order(symbol="BTCUSDT", client_order_id="p95-entry")
        assert await exchange.fetch_order(symbol="BTCUSDT", client_order_id="nope") is None
        assert await exchange.fetch_open_orders() == []
        # a cancelled stop no longer triggers
        assert await exchange.on_tick("BTCUSDT", 48_000.0, 48_000.0) == []
        assert len(await exchange.fetch_positions()) == 1
    assert cancelled.status == OrderStatus.CANCELED
    assert entry.status == OrderStatus.FILLED


async def test_state_survives_a_restart(sqlite_url):
    async with paper(sqlite_url) as exchange:
        await open_long(exchange)
        await exchange.create_trigger_order(
            symbol="BTCUSDT", side=SELL, quantity=0.1, stop_price=49_000.0, type=STOP,
            client_order_id="p95-entry-sl")
        before = (await exchange.fetch_balance(), await exchange.fetch_open_orders())

    async with paper(sqlite_url, paper_starting_balance=777.0) as restarted:
        balance = await restarted.fetch_balance()
        [position] = await restarted.fetch_positions()
        orders = await restarted.fetch_open_orders()
        with pytest.raises(OrderRejected):
            await restarted.create_market_order(symbol="BTCUSDT", side=BUY, quantity=0.1,
                                                client_order_id="p95-entry")
        # the resting stop was reloaded: a tick triggers it
        [stopped] = await restarted.on_tick("BTCUSDT", 48_990.0, 48_999.0)
        after = await restarted.fetch_balance()

    assert balance.wallet_balance == before[0].wallet_balance == approx(10_000 - 2.0004)
    assert orders == before[1]
    assert (position.quantity, position.entry_price) == (0.1, 50_010.0)
    assert position.mark_price is None and position.unrealized_pnl == 0.0  # no tick yet
    assert stopped.client_order_id == "p95-entry-sl"
    assert after.wallet_balance == approx(
        10_000 - 2.0004 + (48_980.2 - 50_010.0) * 0.1 - 0.0004 * 48_980.2 * 0.1)


async def test_a_tick_with_nothing_to_do_touches_no_database(sqlite_url):
    statements: list[str] = []
    async with paper(sqlite_url, statements) as exchange:
        await open_long(exchange)
        await exchange.create_trigger_order(
            symbol="BTCUSDT", side=SELL, quantity=0.1, stop_price=49_000.0, type=STOP,
            client_order_id="p95-entry-sl")
        statements.clear()
        for i in range(200):
            # nothing on ETHUSDT at all; on BTCUSDT a position and a stop that do not trigger
            assert await exchange.on_tick("ETHUSDT", 2_500.0 + i, None) == []
            assert await exchange.on_tick("BTCUSDT", 50_000.0 + i, 49_500.0 + i) == []
        assert statements == []
        # when something does fill, the tick writes
        assert len(await exchange.on_tick("BTCUSDT", 48_900.0, 48_900.0)) == 1
        assert statements != []


async def test_quantities_follow_the_step_and_tiny_orders_are_refused(sqlite_url):
    async with paper(sqlite_url) as exchange:
        await exchange.on_tick("BTCUSDT", 50_000.0, None)
        with pytest.raises(OrderRejected) as zero:
            await exchange.create_market_order(symbol="BTCUSDT", side=BUY, quantity=0.0009,
                                               client_order_id="p95-zero")
        with pytest.raises(OrderRejected) as tiny:
            await exchange.create_market_order(symbol="BTCUSDT", side=BUY, quantity=0.001,
                                               client_order_id="p95-tiny")
        await exchange.on_tick("SOLUSDT", 100.0, None)
        order = await exchange.create_market_order(symbol="SOLUSDT", side=BUY, quantity=2.7,
                                                   client_order_id="p95-sol")
    assert zero.value.code == "-4003"
    assert tiny.value.code == "-4164"  # 50 USDT < BTCUSDT's 100 minimum notional
    assert order.filled_quantity == 2.0  # SOLUSDT's step is 1


async def test_paper_exchange_on_postgresql(postgres_url):
    async with paper(postgres_url) as exchange:
        await open_long(exchange)
        await exchange.create_trigger_order(
            symbol="BTCUSDT", side=SELL, quantity=0.1, stop_price=49_000.0, type=STOP,
            client_order_id="p95-entry-sl")
        with pytest.raises(OrderRejected) as duplicate:
            await exchange.create_market_order(symbol="BTCUSDT", side=BUY, quantity=0.1,
                                               client_order_id="p95-entry")

    async with paper(postgres_url) as restarted:
        [position] = await restarted.fetch_positions()
        [stopped] = await restarted.on_tick("BTCUSDT", 49_000.0, 48_990.0)
        balance = await restarted.fetch_balance()
        assert await restarted.fetch_positions() == []

    assert duplicate.value.code == "-4116"
    assert position.isolated_margin == approx(250.05)
    assert stopped.average_price == approx(48_990.2)
    assert balance.wallet_balance == approx(
        10_000 - 2.0004 + (48_990.2 - 50_010.0) * 0.1 - 0.0004 * 48_990.2 * 0.1)
