"""End to end (issue 6): the four services as their own processes, run by the supervisor as
`make run` does, on PostgreSQL, RabbitMQ and Redis; driven only through the public surfaces a
user has: TradingView's webhook, the REST APIs with the key, ticks in Redis as the market
feed writes them, and Telegram (the Bot API imitation: what the phone shows, and the operator's
commands). The fault cases are in test_faults.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tests.conftest import AMQP_URL, REDIS_URL
from tests.fakes.telegram import FakeTelegram
from tests.integration.notify_fixtures import CHAT, first_told
from tests.outcomes import book_mismatches, outcomes
from tests.stack import Stack, running_stack, stack_env, until

SECRET = "e2e-webhook-secret-5m1"
KEY = {"X-API-Key": "e2e-api-key-2v7"}
BTC = 43123.5


def webhook(alert_id: str, **fields: Any) -> dict[str, Any]:
    return {"secret": SECRET, "symbol": "BINANCE:BTCUSDT.P", "action": "buy", "price": str(BTC),
            "confidence": 0.9, "rsi": 50, "strategy": "p95-e2e", "timeframe": "15",
            "alert_id": alert_id, "sent_at": datetime.now(UTC).isoformat()} | fields


async def message(telegram: FakeTelegram, heading: str, after: int = 0) -> str:
    """The plain text of the first message to the chat, from the `after`th sent on, with
    `heading` in its first line. Events that pile up while one is being sent go out merged
    into one digest (notify.md, "Delivery"), so each is looked for inside digests too."""
    async def found() -> str | None:
        return first_told(telegram.sent, heading, after)

    return await until(found, 30, what=f"a Telegram message headed {heading!r}")


async def get(stack: Stack, service: str, path: str, **params: Any) -> Any:
    response = await stack.call(service, "GET", path, headers=KEY, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_alerts_trade_close_and_obey_the_operator_end_to_end(
        vhost, redis_prefix, postgres_url, amqp, tmp_path):
    async with FakeTelegram() as telegram:
        env = stack_env(
            amqp_url=AMQP_URL, vhost=vhost, redis_url=REDIS_URL, redis_prefix=redis_prefix,
            database_url=postgres_url, WEBHOOK_SECRET=SECRET,
            PHOENIX95_API_KEYS=KEY["X-API-Key"], TELEGRAM_BOT_TOKEN=telegram.token,
            TELEGRAM_CHAT_IDS=str(CHAT), TELEGRAM_API_BASE_URL=telegram.url,
            TELEGRAM_MIN_INTERVAL_S="0")
        async with running_stack(env, tmp_path / "run.log", telegram) as stack:
            await stack.tick("BTCUSDT", BTC)

            # A TradingView alert becomes a protected paper position, and the phone is told.
            accepted = await stack.call("brain", "POST", "/webhook", json=webhook("e2e-1"))
            assert accepted.status_code == 202, accepted.text
            again = await stack.call("brain", "POST", "/webhook", json=webhook("e2e-1"))
            assert (again.status_code, again.json()["status"]) == (200, "duplicate")

            async def opened() -> list[dict[str, Any]]:
                return await get(stack, "execute", "/positions")

            [position] = await until(opened, 30, what="the position")
            assert (position["symbol"], position["side"]) == ("BTCUSDT", "long")
            assert position["signal_id"] == accepted.json()["signal_id"]
            assert position["stop_loss"] < BTC < position["take_profit"]
            note = await message(telegram, "Position opened")
            assert "BTCUSDT" in note

            # The market reaches the target: closed as take_profit, with the PnL on the phone.
            await stack.tick("BTCUSDT", position["take_profit"] + 1)

            async def closed() -> list[dict[str, Any]]:
                return await get(stack, "execute", "/positions", status="closed")

            [done] = await until(closed, 30, what="the close")
            assert done["close_reason"] == "take_profit" and done["realized_pnl"] > 0
            closed_note = await message(telegram, "Position closed")
            assert f"{done['realized_pnl']:+,.2f} USDT" in closed_note

            # A symbol outside the allowed list: refused by RISK, and the phone is told why.
            refused = await stack.call("brain", "POST", "/webhook", json=webhook(
                "e2e-pepe", symbol="BINANCE:PEPEUSDT.P", price="0.0000123"))
            assert refused.status_code == 202, refused.text
            assert "SYMBOL_NOT_ALLOWED" in await message(telegram, "Rejected by RISK")

            # The operator halts trading from Telegram: an entry is then refused; /resume.
            after = len(telegram.sent)
            telegram.add_command(CHAT, "/halt e2e check")
            await message(telegram, "Trading HALTED", after)
            assert (await get(stack, "risk", "/status"))["trading_state"] == "HALTED"
            halted = await stack.call("brain", "POST", "/webhook", json=webhook("e2e-halted"))
            assert "TRADING_HALTED" in await message(telegram, "Rejected by RISK", after)
            after = len(telegram.sent)
            telegram.add_command(CHAT, "/resume")
            await message(telegram, "Trading ACTIVE", after)

            # /status on the phone shows what EXECUTE's account says.
            after = len(telegram.sent)
            telegram.add_command(CHAT, "/status")
            status = await message(telegram, "Status", after)
            account = await get(stack, "execute", "/account")
            assert f"{account['equity']:,.2f}" in status

        # Each accepted alert ended in exactly one outcome.
        signals = [r.json()["signal_id"] for r in (accepted, refused, halted)]
        found = await outcomes(postgres_url, signals)
        assert [found[s].final for s in signals] == [
            "POSITION", "RISK_REJECTED:SYMBOL_NOT_ALLOWED", "RISK_REJECTED:TRADING_HALTED"]
        assert [p for o in found.values() if (p := o.problems())] == []


async def test_quick_reversals_leave_one_position_per_symbol_as_on_the_exchange(
        vhost, redis_prefix, postgres_url, amqp, tmp_path):
    """Opposite alerts for one symbol a few milliseconds apart: each approval reverses what the
    one before opened (or was opening), so EXECUTE's book stays the exchange's."""
    env = stack_env(amqp_url=AMQP_URL, vhost=vhost, redis_url=REDIS_URL,
                    redis_prefix=redis_prefix, database_url=postgres_url,
                    WEBHOOK_SECRET=SECRET, PHOENIX95_API_KEYS=KEY["X-API-Key"],
                    RATE_LIMIT_PER_MINUTE="100000", MAX_ORDERS_PER_MINUTE="1000")
    async with running_stack(env, tmp_path / "run.log") as stack:
        await stack.tick("BTCUSDT", BTC)

        # Spacings around the time a reversal takes, so that some arrive while the one
        # before is between its close and its open.
        starts = [sum(0.04 + 0.02 * (k % 6) for k in range(i)) for i in range(30)]

        async def send(i: int) -> str:
            await asyncio.sleep(starts[i])
            response = await stack.call("brain", "POST", "/webhook", json=webhook(
                f"flip-{i}", action="buy" if i % 2 == 0 else "sell"))
            assert response.status_code == 202, response.text
            return response.json()["signal_id"]

        accepted = await asyncio.gather(*(send(i) for i in range(len(starts))))

        async def settled() -> dict[str, Any] | None:
            found = await outcomes(postgres_url, accepted)
            return found if all(o.final for o in found.values()) else None

        found = await until(settled, 30, what="every alert's outcome")
        await asyncio.sleep(1)  # the last protective orders
        assert [p for o in found.values() if (p := o.problems())] == []
        finals = [found[s].final for s in accepted]
        assert finals.count("POSITION") > 2, finals  # reversals happened
        assert await book_mismatches(postgres_url) == {}
        open_now = await get(stack, "execute", "/positions")
        assert len(open_now) == 1, open_now
