"""What follows a change in EXECUTE (paper exchange, real broker, Redis and database): a
reversal, the entry's intent written once before it is sent, and the derived state (Redis
mirrors, account snapshots, performance) refreshed behind the entry, once per burst, and
again after a failure."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis
from sqlalchemy import event, select

from services.execute.engine import client_order_id
from services.execute.exchange.base import OrderSide
from services.execute.models import AccountSnapshot, OrderRecord, PositionRecord
from shared.messaging import topology
from tests.conftest import REDIS_URL
from tests.integration.conftest import API_KEY
from tests.integration.execute_fixtures import (
    approval,
    count,
    plan,
    protected_positions,
    until,
)

KEY = {"X-API-Key": API_KEY}


async def redis_hash(execute, key: str) -> dict[str, str]:
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return await redis.hgetall(execute.settings.redis_prefix + key)
    finally:
        await redis.aclose()


async def test_a_reversal_closes_cancels_the_old_protection_and_opens_protected(
        make_execute, broker):
    async with make_execute() as execute:
        await execute.tick("BTCUSDT", 43123.5)
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        [long] = await protected_positions(execute)
        await broker.publish(approval(plan(side="short"), reverse=True),
                             topology.RISK_MANAGEMENT.name, "trade.execute")

        async def reversed_and_mirrored():
            positions = await execute.positions()
            mirrored = await redis_hash(execute, "positions:open")
            return positions and positions[0]["side"] == "short" and \
                set(mirrored) == {positions[0]["position_id"]} and positions

        [short] = await until(reversed_and_mirrored, what="the reversal, mirrored")
        await protected_positions(execute)
        [closed] = await execute.positions("closed")
        orders = (await execute.client.get("/orders", headers=KEY)).json()
        resting = await execute.app.state.engine.exchange.fetch_open_orders()
        performance = await redis_hash(execute, "performance")
    assert (closed["position_id"], closed["close_reason"]) == (long["position_id"], "signal")
    old = {o["purpose"]: o["status"] for o in orders
           if o["position_id"] == long["position_id"]}
    assert old == {"entry": "FILLED", "close": "FILLED", "stop_loss": "CANCELED",
                   "take_profit": "CANCELED"}
    assert {o.client_order_id for o in resting} == {short["position_id"] + "-sl",
                                                    short["position_id"] + "-tp"}
    assert int(performance["total_trades"]) == 1


async def test_a_reversal_whose_close_is_refused_opens_nothing_beside_it(make_execute):
    """The long was closed on the exchange behind EXECUTE's back: the reversal's reduce-only
    close is refused (-2022), so its entry is refused too, rather than holding both sides."""
    async with make_execute() as execute:
        engine = execute.app.state.engine
        await execute.tick("BTCUSDT", 43123.5)
        await engine.on_approved(approval(plan()).open())
        [long] = await engine.open_positions()
        await engine.exchange.create_market_order(
            symbol="BTCUSDT", side=OrderSide.SELL, quantity=long.quantity,
            client_order_id="closed-by-hand", reduce_only=True)
        short = approval(plan(side="short"), reverse=True).open()
        await engine.on_approved(short)
        await engine.on_approved(short)  # redelivered: refused still, nothing sent

        async with engine.sessions() as session:
            entry = await session.get(OrderRecord, client_order_id(short.signal.signal_id))
            positions = (await session.scalars(select(PositionRecord))).all()
        at_exchange = await engine.exchange.fetch_positions()
    assert (entry.status, entry.error) == ("REJECTED", "the long position could not be closed")
    assert [(p.side, p.status) for p in positions] == [("long", "open")]
    assert at_exchange == []


async def test_the_derived_state_follows_the_entry_of_a_reversal(make_execute):
    """The close's account snapshot, mirrors and performance wait for the new entry's fill,
    and are done when the approval is (before its ack)."""
    async with make_execute() as execute:
        engine = execute.app.state.engine
        await execute.tick("BTCUSDT", 43123.5)
        await engine.on_approved(approval(plan()).open())
        since = engine.now()
        short = approval(plan(side="short"), reverse=True).open()
        await engine.on_approved(short)

        async with engine.sessions() as session:
            entry = await session.get(OrderRecord, client_order_id(short.signal.signal_id))
            snapshots = (await session.scalars(select(AccountSnapshot).where(
                AccountSnapshot.taken_at > since))).all()
        [position] = await engine.open_positions()
        mirrored = await redis_hash(execute, "positions:open")
        performance = await redis_hash(execute, "performance")
    assert entry.status == "FILLED"
    assert snapshots and all(s.taken_at >= entry.updated_at for s in snapshots)
    assert snapshots[-1].used_margin == pytest.approx(position.margin)
    assert json.loads(mirrored[position.position_id])["side"] == "short"
    assert int(performance["total_trades"]) == 1


async def test_the_entry_is_submitted_in_one_commit_before_it_is_sent(make_execute):
    async with make_execute() as execute:
        engine = execute.app.state.engine
        await execute.tick("BTCUSDT", 43123.5)
        commits = []
        event.listen(execute.app.state.db.sync_engine, "commit", lambda _: commits.append(1))
        seen = {}
        send = engine.exchange.create_market_order

        async def watched_send(**order):
            async with engine.sessions() as session:
                row = await session.get(OrderRecord, order["client_order_id"])
            seen.update(status=row.status, commits=len(commits))
            return await send(**order)

        engine.exchange.create_market_order = watched_send
        assert await engine.open_position("one-commit", plan()) is not None
    assert seen == {"status": "SUBMITTED", "commits": 1}


async def test_a_burst_of_changes_is_refreshed_once(make_execute):
    async with make_execute() as execute:
        engine = execute.app.state.engine
        before = await count(execute, AccountSnapshot)
        for _ in range(5):
            engine.books_changed()
        await engine.settled()
        assert await count(execute, AccountSnapshot) == before + 1
        await engine.settled()  # nothing changed since: nothing to do
        assert await count(execute, AccountSnapshot) == before + 1


async def test_a_refresh_that_failed_is_done_again(make_execute):
    async with make_execute() as execute:
        engine = execute.app.state.engine
        await execute.tick("BTCUSDT", 43123.5)
        await engine.open_position("to-close", plan())
        await engine.settled()
        refresh, calls = engine.on_positions_changed, []

        async def failing_once(positions):
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("the exchange did not answer")
            await refresh(positions)

        engine.on_positions_changed = failing_once
        await execute.client.post("/close", headers=KEY, json={"symbol": "BTCUSDT"})

        async def performance():
            return (await redis_hash(execute, "performance")).get("total_trades") == "1"

        await until(performance, what="the performance, on the next try")
        assert len(calls) == 2
        assert await redis_hash(execute, "positions:open") == {}
