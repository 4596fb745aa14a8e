"""EXECUTE's promises: exactly once, reconciliation, the monitor (paper exchange, real
broker, Redis and database; RISK in-process where its reaction matters)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from services.execute.exchange.base import OrderSide, OrderType
from services.execute.models import OrderRecord, PaperOrder
from services.execute.reconcile import reconcile
from shared.contracts import Envelope
from shared.messaging import topology
from tests.conftest import REDIS_URL
from tests.integration.conftest import API_KEY, brain_settings, running_brain
from tests.integration.execute_fixtures import (
    approval,
    count,
    execute_settings,
    plan,
    protected_positions,
    running_execute,
    until,
)
from tests.integration.helpers import body, drain
from tests.integration.risk_fixtures import risk_settings, running_risk

KEY = {"X-API-Key": API_KEY}


# --- exactly once --------------------------------------------------------------------

async def test_the_same_approval_three_times_places_one_order(make_execute, broker):
    async with make_execute() as execute:
        await execute.tick("BTCUSDT", 43123.5)
        message = approval(plan())
        for _ in range(3):
            await broker.publish(message, topology.RISK_MANAGEMENT.name, "trade.execute")
        await until(execute.positions, what="the position")
        await asyncio.sleep(1.0)
        entries = PaperOrder.type == "MARKET"
        assert await count(execute, PaperOrder, entries) == 1
        assert len(await execute.positions()) == 1


class Crash(Exception):
    """Where a SIGKILL would stop EXECUTE."""


async def crash_sending_the_entry(make_execute, *, after_the_exchange_filled_it: bool
                                  ) -> Envelope:
    """EXECUTE dies in the entry's call to the exchange: before the exchange got it, or after
    it filled but before its answer was recorded. Returns the approval, never acked."""
    message = approval(plan())
    async with make_execute() as execute:
        await execute.tick("BTCUSDT", 43123.5)
        engine = execute.app.state.engine
        send = engine.exchange.create_market_order

        async def dying(**order):
            if after_the_exchange_filled_it:
                await send(**order)
            raise Crash

        engine.exchange.create_market_order = dying
        with pytest.raises(Crash):
            await engine.open_position(message.correlation_id, plan())
        assert await count(execute, OrderRecord, OrderRecord.status == "SUBMITTED") == 1
    return message


async def test_a_crash_after_sending_leaves_one_order_and_one_position(make_execute, broker):
    message = await crash_sending_the_entry(make_execute, after_the_exchange_filled_it=True)
    async with make_execute() as restarted:  # the restart: the approval comes again
        await broker.publish(message, topology.RISK_MANAGEMENT.name, "trade.execute")
        await until(restarted.positions, what="the position after the restart")
        await asyncio.sleep(0.5)
        assert await count(restarted, PaperOrder, PaperOrder.type == "MARKET") == 1
        assert len(await restarted.positions()) == 1
        assert await count(restarted, OrderRecord, OrderRecord.status == "FILLED",
                           OrderRecord.purpose == "entry") == 1


async def test_a_crash_before_sending_never_sends_the_entry_again(make_execute, broker):
    """The row is committed SUBMITTED before the exchange is called: after a crash in
    between, the exchange is asked, never sent the order again; not there, it is rejected."""
    message = await crash_sending_the_entry(make_execute, after_the_exchange_filled_it=False)
    async with make_execute() as restarted:
        await broker.publish(message, topology.RISK_MANAGEMENT.name, "trade.execute")

        async def rejected():
            return await count(restarted, OrderRecord, OrderRecord.status == "REJECTED",
                               OrderRecord.error == "not received by the exchange")

        await until(rejected, what="the entry resolved as never received")
        assert await count(restarted, PaperOrder) == 0
        assert await restarted.positions() == []


# --- protection ------------------------------------------------------------------------

async def test_a_stop_that_cannot_be_placed_closes_the_position_and_its_target(
        make_execute, amqp):
    async with make_execute() as execute:
        engine = execute.app.state.engine
        await engine.exchange.on_tick("BTCUSDT", 43123.5, 43123.5)
        # A long's stop above the mark: the exchange refuses it, it would trigger at once.
        unprotectable = plan().model_copy(update={"stop_loss": 43200.0})
        position = await engine.open_position("no-stop", unprotectable)
        [closed] = await execute.positions("closed")
        resting = await engine.exchange.fetch_open_orders()
        orders = (await execute.client.get("/orders", headers=KEY)).json()
        alerts = [body(m)["payload"] for m in await drain(amqp, "notify_events", settle_s=1.0)
                  if body(m)["type"] == "execution.alert"]
    assert (closed["position_id"], closed["close_reason"]) == (position.position_id,
                                                               "unprotected")
    assert resting == []
    assert {o["purpose"]: o["status"] for o in orders} == {
        "entry": "FILLED", "stop_loss": "CANCELED", "take_profit": "CANCELED",
        "close": "FILLED"}
    assert [(a["code"], a["severity"]) for a in alerts] == [
        ("UNPROTECTED_POSITION_CLOSED", "critical")]


# --- reconciliation --------------------------------------------------------------------

async def test_a_consistent_account_is_left_untouched(make_execute, broker):
    async with make_execute() as execute:
        await execute.tick("BTCUSDT", 43123.5)
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        await until(execute.positions)
        before = await execute.positions()
        done = await reconcile(execute.app.state.engine)
        assert set(done.values()) == {0}
        assert await execute.positions() == before


async def test_an_exchange_only_position_is_adopted_with_an_alert(make_execute, amqp):
    async with make_execute() as execute:
        exchange = execute.app.state.engine.exchange
        await execute.tick("ETHUSDT", 2500.0)
        await exchange.create_market_order(symbol="ETHUSDT", side=OrderSide.SELL, quantity=1.0,
                                           client_order_id="by-hand-1")
        done = await reconcile(execute.app.state.engine)
        assert done["adopted"] == 1
        [adopted] = await execute.positions()
        assert (adopted["symbol"], adopted["side"], adopted["quantity"]) == ("ETHUSDT", "short",
                                                                            1.0)
        alerts = [body(m) for m in await drain(amqp, "notify_events", settle_s=1.0)
                  if body(m)["type"] == "execution.alert"]
        assert [a["payload"]["code"] for a in alerts] == ["EXTERNAL_POSITION_ADOPTED"]
        resting = await exchange.fetch_open_orders("ETHUSDT")
        assert {o.type for o in resting} == {OrderType.STOP_MARKET,
                                             OrderType.TAKE_PROFIT_MARKET}


async def test_a_database_only_position_is_closed_as_closed_on_exchange(make_execute, broker):
    async with make_execute() as execute:
        engine = execute.app.state.engine
        await execute.tick("BTCUSDT", 43123.5)
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        [position] = await until(execute.positions)
        await engine.exchange.create_market_order(  # closed behind our back
            symbol="BTCUSDT", side=OrderSide.SELL, quantity=position["quantity"],
            client_order_id="by-hand-2", reduce_only=True)
        done = await reconcile(engine)
        assert done["closed_on_exchange"] == 1
        [closed] = await execute.positions("closed")
        assert closed["close_reason"] == "closed_on_exchange"


async def test_a_missing_stop_is_placed_again(make_execute, broker):
    async with make_execute() as execute:
        engine = execute.app.state.engine
        await execute.tick("BTCUSDT", 43123.5)
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        [position] = await protected_positions(execute)
        stop_id = position["position_id"] + "-sl"
        await engine.exchange.cancel_order(symbol="BTCUSDT", client_order_id=stop_id)
        done = await reconcile(engine)
        assert done["protected"] == 1
        resting = await engine.exchange.fetch_open_orders("BTCUSDT")
        stops = [o for o in resting if o.type is OrderType.STOP_MARKET]
        assert len(stops) == 1 and stops[0].client_order_id != stop_id
        assert stops[0].stop_price == 42261.0


# --- the monitor -----------------------------------------------------------------------

async def test_partial_take_profit_closes_half_and_moves_the_stop_to_entry(make_execute,
                                                                           broker):
    # 0.5% of equity (50 USDT) on 0.092 BTC: +543.5 → at 43 667, short of the target.
    async with make_execute(partial_tp_equity_pct=0.005) as execute:
        await execute.tick("BTCUSDT", 43123.5)
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        [position] = await until(execute.positions)
        await execute.app.state.engine.settled()  # the monitor's book has it
        await execute.tick("BTCUSDT", 43750.0, mark=43750.0)

        async def halved():
            positions = await execute.positions()
            return positions and positions[0]["partial_taken"] and positions[0]

        reduced = await until(halved, what="the partial take-profit")
        assert reduced["quantity"] == pytest.approx(position["quantity"] / 2)
        assert reduced["stop_loss"] == position["entry_price"]
        async def break_even_stop():
            resting = await execute.app.state.engine.exchange.fetch_open_orders("BTCUSDT")
            stops = [o for o in resting if o.type is OrderType.STOP_MARKET]
            moved = len(stops) == 1 and abs(stops[0].stop_price - position["entry_price"]) < 0.1
            return moved and stops[0]

        stop = await until(break_even_stop, what="the stop moved to the entry")
        assert stop.stop_price == pytest.approx(position["entry_price"], abs=0.1)
        assert stop.quantity == pytest.approx(reduced["quantity"])
        await execute.tick("BTCUSDT", 43800.0, mark=43800.0)
        await asyncio.sleep(0.5)
        assert (await execute.positions())[0]["quantity"] == reduced["quantity"]  # once only


async def test_the_emergency_close_closes_everything_and_risk_halts(
    vhost, redis_prefix, sqlite_url, amqp, broker
):
    async with AsyncExitStack() as stack:
        risk = await stack.enter_async_context(
            running_risk(risk_settings(vhost, redis_prefix, sqlite_url)))
        execute = await stack.enter_async_context(running_execute(execute_settings(
            vhost, redis_prefix, sqlite_url, emergency_loss_pct=0.001)))
        await execute.tick("BTCUSDT", 43123.5)
        await execute.tick("ETHUSDT", 2500.0)
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        await broker.publish(approval(plan("ETHUSDT", 2500.0, 1.6)),
                             topology.RISK_MANAGEMENT.name, "trade.execute")

        async def two_open():
            return len(await execute.positions()) == 2

        await until(two_open)
        await execute.app.state.engine.settled()  # the monitor's book has them
        await execute.tick("BTCUSDT", 42950.0, mark=42950.0)  # −16 USDT: past 0.1% of 10 000

        async def all_closed():
            return await execute.positions() == [] and await execute.positions("closed")

        await until(all_closed, what="the emergency close")
        reasons = {p["close_reason"] for p in await execute.positions("closed")}
        assert reasons == {"emergency"}

        async def halted():
            return (await risk.status())["trading_state"] == "HALTED"

        await until(halted, what="RISK to halt")


async def test_a_position_older_than_48_hours_is_auto_closed(make_execute, broker):
    now = [datetime.now(UTC)]
    async with make_execute(clock=lambda: now[0]) as execute:
        await execute.tick("BTCUSDT", 43123.5)
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        await until(execute.positions)
        now[0] += timedelta(hours=48, minutes=1)

        async def auto_closed():
            return await execute.positions("closed")

        [closed] = await until(auto_closed, what="the auto-close")
        assert closed["close_reason"] == "auto_close"


async def test_stale_prices_make_health_degraded(make_execute, broker):
    async with make_execute(stale_price_s=1.0) as execute:
        await execute.tick("BTCUSDT", 43123.5)
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        await until(execute.positions)
        assert (await execute.client.get("/health")).json()["status"] == "ok"

        async def degraded():
            health = (await execute.client.get("/health")).json()
            return health["status"] == "degraded" and health

        health = await until(degraded, timeout_s=10, what="stale prices")
        assert health["market_data"]["stale_symbols"] == ["BTCUSDT"]
        await execute.tick("BTCUSDT", 43130.0)

        async def recovered():
            return (await execute.client.get("/health")).json()["status"] == "ok"

        await until(recovered)


async def test_after_ten_closed_trades_brains_kelly_uses_the_history(
    vhost, redis_prefix, sqlite_url, amqp, broker
):
    async with make_pair(vhost, redis_prefix, sqlite_url) as (brain, execute):
        for i in range(10):  # 7 wins at the target, 3 losses at the stop
            await execute.tick("BTCUSDT", 43123.5)
            await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name,
                                 "trade.execute")
            await protected_positions(execute)
            exit_price = 44100.0 if i < 7 else 42100.0
            await execute.tick("BTCUSDT", exit_price, mark=exit_price)

            async def flat(n=i + 1):
                return len(await execute.positions("closed")) == n

            await until(flat, what=f"trade {i + 1} closed")
        await execute.app.state.engine.settled()  # refreshed behind the close
        redis = Redis.from_url(REDIS_URL, decode_responses=True)
        performance = await redis.hgetall(redis_prefix + "performance")
        await redis.aclose()
        assert int(performance["total_trades"]) == 10
        assert float(performance["win_rate"]) == pytest.approx(0.7)
        analysis = (await brain.client.post("/analyze", headers=KEY, json={
            "symbol": "BTCUSDT", "action": "buy", "price": 43123.5, "confidence": 0.9,
            "rsi": 50})).json()
        assert analysis["sizing"]["win_rate"] == pytest.approx(0.7)
        assert analysis["sizing"]["payoff_ratio"] == pytest.approx(
            float(performance["avg_win"]) / float(performance["avg_loss"]))
        assert analysis["scores"]["market"] == 0.9  # win rate 0.7 > 0.6, no ×0.8 any more


def make_pair(vhost, redis_prefix, sqlite_url):
    stack = AsyncExitStack()

    class Pair:
        async def __aenter__(self):
            brain = await stack.enter_async_context(running_brain(brain_settings(
                vhost, redis_prefix, sqlite_url, performance_cache_s=0.01)))
            execute = await stack.enter_async_context(running_execute(execute_settings(
                vhost, redis_prefix, sqlite_url)))
            return brain, execute

        async def __aexit__(self, *exc):
            await stack.aclose()

    return Pair()


async def test_the_legs_of_a_position_add_up_to_its_result(make_execute, broker, amqp):
    """A partial take-profit and then the rest: each position.closed carries its own PnL
    (with its share of the entry fee); together they are the position's result."""
    async with make_execute(partial_tp_equity_pct=0.005) as execute:
        await execute.tick("BTCUSDT", 43123.5)
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        [position] = await protected_positions(execute)
        await execute.app.state.engine.settled()  # the monitor's book has it
        await execute.tick("BTCUSDT", 43750.0, mark=43750.0)

        async def halved():
            positions = await execute.positions()
            return positions and positions[0]["partial_taken"]

        await until(halved)
        await protected_positions(execute)
        await execute.client.post("/close", headers=KEY, json={"symbol": "BTCUSDT"})
        [closed] = await until(lambda: execute.positions("closed"))
        legs = [body(m)["payload"] for m in await drain(amqp, "notify_events", settle_s=1.0)
                if body(m)["type"] == "position.closed"]
    assert [leg["reason"] for leg in legs] == ["partial_take_profit", "manual"]
    assert sum(leg["realized_pnl"] for leg in legs) == pytest.approx(closed["realized_pnl"])
    initial_margin = position["quantity"] * position["entry_price"] / 20
    assert closed["roe"] == pytest.approx(closed["realized_pnl"] / initial_margin)
    assert closed["realized_pnl"] > 0
