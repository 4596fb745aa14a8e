"""Paper trading end to end: BRAIN, RISK and EXECUTE in-process over the real broker, Redis
and database; prices injected into `market:stream`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.integration.conftest import alert
from tests.integration.execute_fixtures import KEY, until

FEE = 0.0004
SLIPPAGE = 0.0002


def fresh_alert(**fields):
    return alert(sent_at=datetime.now(UTC).isoformat(), **fields)


async def open_one(brain, execute, **fields):
    response = await brain.client.post("/webhook", json=fresh_alert(**fields))
    assert response.status_code == 202, response.text

    async def opened():
        return await execute.positions()

    [position] = await until(opened, what="the position")
    await until(lambda: protected(execute), what="the stop and the target")
    return position


async def protected(execute):
    orders = (await execute.client.get("/orders", headers=KEY)).json()
    resting = {o["purpose"]: o for o in orders if o["status"] == "OPEN"}
    return len(resting) == 2 and resting


async def test_a_webhook_becomes_one_protected_position(system):
    brain, _risk, execute = system
    await execute.tick("BTCUSDT", 43123.5)
    position = await open_one(brain, execute, alert_id="e2e-1")

    assert position["symbol"] == "BTCUSDT" and position["side"] == "long"
    # 0.02 × 10 000 × 20 / 43 123.5 → 0.092 BTC, bought 2 bps above the last price.
    assert position["quantity"] == 0.092
    assert position["entry_price"] == pytest.approx(43123.5 * (1 + SLIPPAGE), abs=0.1)
    assert position["margin"] == pytest.approx(0.092 * position["entry_price"] / 20)
    assert (position["stop_loss"], position["take_profit"]) == (42261.0, 43986.0)
    assert 40000 < position["liquidation_price"] < position["entry_price"]
    resting = await protected(execute)
    assert resting["stop_loss"]["stop_price"] == 42261.0
    assert resting["take_profit"]["stop_price"] == 43986.0
    assert all(o["reduce_only"] for o in resting.values())


@pytest.mark.parametrize(
    ("exit_mark", "reason", "cancelled"),
    [(44000.0, "take_profit", "stop_loss"), (42200.0, "stop_loss", "take_profit")],
)
async def test_a_tick_through_a_protective_price_closes_the_position(
    system, exit_mark, reason, cancelled
):
    brain, _risk, execute = system
    await execute.tick("BTCUSDT", 43123.5)
    position = await open_one(brain, execute, alert_id=f"e2e-{reason}")
    await execute.tick("BTCUSDT", exit_mark, mark=exit_mark)

    async def closed():
        return await execute.positions("closed")

    [done] = await until(closed, what="the close")
    assert done["close_reason"] == reason
    entry, quantity = position["entry_price"], position["quantity"]
    exit_price = exit_mark * (1 - SLIPPAGE)  # a sell fills 2 bps below the last price
    expected = (exit_price - entry) * quantity - FEE * quantity * (entry + exit_price)
    assert done["realized_pnl"] == pytest.approx(expected, abs=0.01)
    orders = (await execute.client.get("/orders", headers=KEY)).json()
    by_purpose = {o["purpose"]: o["status"] for o in orders if o["purpose"] != "entry"}
    assert by_purpose[reason] == "FILLED" and by_purpose[cancelled] == "CANCELED"
    assert await execute.positions() == []


async def test_the_same_alert_three_times_gives_one_position(system):
    brain, _risk, execute = system
    await execute.tick("ETHUSDT", 2500.0)
    answers = [await brain.client.post("/webhook", json=fresh_alert(
        alert_id="thrice", symbol="ETHUSDT", price=2500.0)) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 200, 200]

    async def opened():
        return await execute.positions()

    await until(opened)
    import asyncio

    await asyncio.sleep(1.0)
    assert len(await execute.positions()) == 1
