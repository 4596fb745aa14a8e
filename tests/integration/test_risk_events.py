"""RISK learning from EXECUTE's events, on PostgreSQL: positions, reservations, cooldowns,
equity, automatic halts; events in any order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from shared.contracts import (
    AccountUpdated,
    Action,
    Decision,
    EmergencyCloseTriggered,
    Envelope,
    OrderUpdated,
    PositionClosed,
)
from shared.messaging import topology
from tests.conftest import REDIS_URL
from tests.integration.helpers import body, drain
from tests.integration.risk_fixtures import (
    analysis,
    opened,
    publish_analysis,
)


async def send(broker, payload, routing_key: str) -> None:
    await broker.publish(Envelope.wrap(payload, producer="execute", correlation_id="c"),
                         topology.TRADING_EXECUTION.name, routing_key)


def closed(position_id: str, symbol: str = "BTCUSDT", reason: str = "take_profit"):
    return PositionClosed(
        position_id=position_id, symbol=symbol, side="long", quantity=0.1,
        entry_price=60000.0, exit_price=61200.0, realized_pnl=120.0, roe=0.4, reason=reason,
        closed_at=datetime.now(UTC))


async def until(predicate, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.1)):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached")


def verdict_of(messages, signal_id):
    found = [body(m) for m in messages if body(m)["correlation_id"] == signal_id
             and body(m)["type"] in ("trade.approved", "trade.rejected")]
    assert len(found) == 1, found
    return found[0]


async def test_positions_closed_before_their_opening_arrives_stay_closed(
        make_risk_on_postgres, broker):
    async with make_risk_on_postgres() as risk:
        for i in range(10):  # the close overtakes the open: redelivery, replicas, backlog
            await send(broker, closed(f"p{i}", symbol=f"S{i}USDT"), f"position.closed.S{i}USDT")
            await send(broker, opened(f"p{i}", symbol=f"S{i}USDT"), f"position.opened.S{i}USDT")
        await send(broker, opened("live"), "position.opened.BTCUSDT")

        async def only_live_open() -> bool:
            return [p["position_id"] for p in (await risk.status())["open_positions"]] == ["live"]

        await until(only_live_open)
        await asyncio.sleep(0.5)  # and it stays that way
        assert await only_live_open()


async def test_reservations_free_on_refusal_or_opening_not_on_a_reduce_only_fill(
    make_risk_on_postgres, broker, amqp
):
    async with make_risk_on_postgres() as risk:
        first, second = analysis(symbol="BTCUSDT"), analysis(symbol="ETHUSDT", price=3000.0)
        await publish_analysis(broker, first)
        await publish_analysis(broker, second)
        await drain(amqp, "trade_execution", expect=2)
        now = datetime.now(UTC)
        await send(broker, OrderUpdated(client_order_id="c1", signal_id=first.signal.signal_id,
                                        symbol="BTCUSDT", side="sell", status="FILLED",
                                        quantity=0.1, reduce_only=True, updated_at=now),
                   "order.filled.BTCUSDT")
        await send(broker, OrderUpdated(client_order_id="c2", signal_id=second.signal.signal_id,
                                        symbol="ETHUSDT", side="buy", status="REJECTED",
                                        quantity=1, error="-2019 Margin is insufficient",
                                        updated_at=now), "order.rejected.ETHUSDT")

        async def only_first_reserved() -> bool:
            reserved = (await risk.status())["reserved_positions"]
            return [r["signal_id"] for r in reserved] == [first.signal.signal_id]

        await until(only_first_reserved)
        await send(broker, opened("pos-1", signal_id=first.signal.signal_id),
                   "position.opened.BTCUSDT")

        async def moved_to_positions() -> bool:
            status = await risk.status()
            return not status["reserved_positions"] and len(status["open_positions"]) == 1

        await until(moved_to_positions)


async def test_a_stop_out_starts_the_cooldown(make_risk_on_postgres, broker, amqp):
    async with make_risk_on_postgres() as risk:
        await send(broker, opened("pos-sl"), "position.opened.BTCUSDT")
        await send(broker, closed("pos-sl", reason="stop_loss"), "position.closed.BTCUSDT")
        await until(lambda: _no_open(risk))
        entry = analysis(symbol="BTCUSDT")
        await publish_analysis(broker, entry)
        verdict = verdict_of(await drain(amqp, "notify_events", expect=1),
                             entry.signal.signal_id)
        reasons = verdict["payload"]["verdict"]["reasons"]
        assert [r["code"] for r in reasons] == ["COOLDOWN_ACTIVE"]
        assert reasons[0]["limit"] == 900.0 and reasons[0]["value"] < 60


async def _no_open(risk) -> bool:
    return (await risk.status())["open_positions"] == []


async def test_equity_comes_from_the_account_and_a_daily_loss_halts(
        make_risk_on_postgres, broker, amqp):
    async with make_risk_on_postgres() as risk:
        now = datetime.now(UTC)
        snapshot = AccountUpdated(wallet_balance=20000, equity=20000, used_margin=0,
                                  free_margin=20000, day_start_equity=20000, daily_pnl=0,
                                  updated_at=now)
        await send(broker, snapshot, "account.updated")
        older = snapshot.model_copy(update={"equity": 1.0, "updated_at": now - timedelta(1)})
        await send(broker, older, "account.updated")

        async def equity_is_20000() -> bool:
            return (await risk.status())["equity"] == 20000

        await until(equity_is_20000)
        await asyncio.sleep(0.3)
        assert (await risk.status())["equity"] == 20000  # the late snapshot changed nothing

        losing = snapshot.model_copy(update={"equity": 18900, "daily_pnl": -1100,
                                             "updated_at": now + timedelta(seconds=1)})
        await send(broker, losing, "account.updated")
        [alert] = await drain(amqp, "risk_alerts", expect=1)
        assert body(alert)["payload"]["details"]["to"] == "HALTED"
        assert (await risk.status())["trading_state"] == "HALTED"
        redis = Redis.from_url(REDIS_URL, decode_responses=True)
        state = await redis.get(risk.settings.redis_prefix + "risk:trading_state")
        await redis.aclose()
        assert state == "HALTED"


async def test_an_emergency_close_halts_trading(make_risk_on_postgres, broker, amqp):
    async with make_risk_on_postgres() as risk:
        await send(broker, EmergencyCloseTriggered(daily_pnl=-600, day_start_equity=10000,
                                                   threshold=-500,
                                                   triggered_at=datetime.now(UTC)),
                   "account.emergency")
        [alert] = await drain(amqp, "risk_alerts", expect=1)
        assert body(alert)["payload"]["details"]["changed_by"] == "execute"
        assert (await risk.status())["trading_state"] == "HALTED"


async def test_a_stale_close_is_refused(make_risk_on_postgres, broker, amqp):
    async with make_risk_on_postgres():
        close = analysis(action=Action.CLOSE, decision=Decision.CLOSE)
        old = close.signal.model_copy(update={"received_at": datetime.now(UTC)
                                              - timedelta(minutes=10)})
        close = close.model_copy(update={"signal": old})
        await publish_analysis(broker, close)
        verdict = verdict_of(await drain(amqp, "notify_events", expect=1),
                             close.signal.signal_id)
        assert verdict["type"] == "trade.rejected"
        assert [r["code"] for r in verdict["payload"]["verdict"]["reasons"]] == ["SIGNAL_STALE"]


async def test_a_liquidation_level_is_not_alerted_again_after_a_restart(
    make_risk_on_postgres, broker, amqp
):
    redis = Redis.from_url(REDIS_URL)

    async def tick(risk, price: float) -> None:
        await redis.xadd(risk.settings.redis_prefix + "market:stream",
                         {"symbol": "BTCUSDT", "price": str(price), "ts": "0"})

    async with make_risk_on_postgres() as risk:
        await send(broker, opened("pos-liq"), "position.opened.BTCUSDT")
        await until(lambda: _has_open(risk))
        await asyncio.sleep(0.5)
        await tick(risk, 58500)  # inside the warning band
        [warning] = await drain(amqp, "risk_alerts", expect=1)
        assert body(warning)["payload"]["code"] == "LIQUIDATION_WARNING"
    async with make_risk_on_postgres() as restarted:
        await asyncio.sleep(0.5)
        await tick(restarted, 58450)  # still in the band: nothing new
        assert await drain(amqp, "risk_alerts", settle_s=1.0) == []
    await redis.aclose()


async def _has_open(risk) -> bool:
    return bool((await risk.status())["open_positions"])
