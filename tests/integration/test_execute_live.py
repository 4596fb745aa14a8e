"""EXECUTE in live mode, through real ccxt against the local imitation of Binance USDⓈ-M:
the whole service, from an approval on the broker to orders on the (imitated) exchange."""

from __future__ import annotations

import asyncio

import pytest

from shared.messaging import topology
from tests.fakes.binance import API_KEY, SECRET, Failure, FakeBinance, brackets
from tests.integration.execute_fixtures import (
    approval,
    execute_settings,
    plan,
    running_execute,
    until,
)
from tests.integration.helpers import body, drain

ORDER = "/fapi/v1/order"


@pytest.fixture
async def fake():
    async with FakeBinance() as binance:
        binance.add_symbol("BTCUSDT", tick="0.1", step="0.001", min_notional="100",
                           leverage_brackets=brackets((0, 50_000, 0.004, 0, 125),
                                                      (50_000, 600_000, 0.005, 50, 100)),
                           price=43123.5)
        yield binance


@pytest.fixture
def make_live(vhost, redis_prefix, sqlite_url, amqp, fake):
    def factory(**overrides):
        return running_execute(execute_settings(
            vhost, redis_prefix, sqlite_url, exchange_mode="live", binance_api_key=API_KEY,
            binance_secret=SECRET, binance_api_base_url=fake.url, exchange_timeout_s=1.0,
            allowed_symbols="BTCUSDT", **overrides))

    return factory


def sent_entries(fake: FakeBinance):
    return [r for r in fake.received(ORDER, "POST")
            if r.params.get("newClientOrderId", "").startswith("p95-")
            and r.params.get("reduceOnly") != "true"]


async def test_an_approval_becomes_one_protected_position_on_the_exchange(make_live, fake,
                                                                          broker):
    async with make_live() as execute:
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        [position] = await until(execute.positions, what="the position")
        await until(lambda: _algo_count(fake, 2), what="the stop and the target")

    [entry] = sent_entries(fake)
    assert entry.params["newClientOrderId"] == position["position_id"]
    assert entry.params["type"] == "MARKET" and entry.api_key == API_KEY
    conditional = fake.received("/fapi/v1/algoOrder", "POST")
    assert {r.params["type"] for r in conditional} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
    assert all(r.params["reduceOnly"] == "true" and r.params["workingType"] == "MARK_PRICE"
               for r in conditional)
    assert {float(r.params["triggerPrice"]) for r in conditional} == {42261.0, 43986.0}


async def _algo_count(fake: FakeBinance, n: int) -> bool:
    return len(fake.received("/fapi/v1/algoOrder", "POST")) >= n


async def test_a_timeout_on_the_entry_is_resolved_by_its_client_id(make_live, fake, broker):
    # The order reaches the exchange, its answer is lost: resolved by asking, never resent.
    fake.fail(ORDER, Failure.timeout(delay_s=3.0, processed=True), times=1, method="POST")
    async with make_live() as execute:
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        [position] = await until(execute.positions, timeout_s=30, what="the position")
    assert len(sent_entries(fake)) == 1
    assert fake.order_by_client_id(position["position_id"]) is not None


async def test_a_margin_rejection_becomes_order_rejected(make_live, fake, broker, amqp):
    fake.fail(ORDER, Failure.binance(-2019, "Margin is insufficient."), times=1, method="POST")
    async with make_live():
        message = approval(plan())
        await broker.publish(message, topology.RISK_MANAGEMENT.name, "trade.execute")
        events = [body(m) for m in await drain(amqp, "notify_events", settle_s=2.0)]
    rejected = [e for e in events if e["type"] == "order.updated"
                and e["payload"]["status"] == "REJECTED"]
    assert len(rejected) == 1
    assert rejected[0]["payload"]["signal_id"] == message.correlation_id
    assert "-2019" in rejected[0]["payload"]["error"]


async def test_hedge_mode_makes_execute_refuse_to_trade(make_live, fake, broker):
    fake.hedge_mode = True
    async with make_live() as execute:
        health = (await execute.client.get("/health")).json()
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        await asyncio.sleep(1.0)
        assert await execute.positions() == []
    assert health["status"] == "unavailable"
    assert "one-way" in health["checks"]["exchange"].lower()
    assert sent_entries(fake) == []


async def test_a_stop_filled_on_the_exchange_is_booked_and_the_target_cancelled(
    make_live, fake, broker, amqp
):
    async with make_live(protective_poll_s=0.3) as execute:
        await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name, "trade.execute")
        await until(execute.positions, what="the position")
        await until(lambda: _algo_count(fake, 2), what="the stop and the target")
        fake.set_price("BTCUSDT", 42200.0, mark=42200.0)  # the exchange triggers the stop

        async def closed():
            return await execute.positions("closed")

        [done] = await until(closed, timeout_s=15, what="the stop to be booked")
        assert done["close_reason"] == "stop_loss"
        assert done["realized_pnl"] < 0

        async def target_cancelled() -> bool:  # cancel-the-other
            return not [a for a in fake.algo_orders.values() if a.algo_status == "NEW"]

        await until(target_cancelled, what="the target to be cancelled")
        events = [body(m) for m in await drain(amqp, "notify_events", settle_s=1.0)]
        assert any(e["type"] == "account.updated" for e in events)
