"""Telegram commands through the real python-telegram-bot against a local imitation."""

from __future__ import annotations

import asyncio

from tests.fakes.telegram import FakeTelegram
from tests.integration.helpers import body, drain
from tests.integration.notify_fixtures import CHAT, STRANGER

UNREACHABLE = "http://127.0.0.1:1"


async def wait_for(predicate, within_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_halt_publishes_halted_and_replies(make_notify, telegram: FakeTelegram, amqp):
    async with make_notify():
        telegram.add_command(CHAT, "/halt funding spike")
        [reply] = await telegram.wait_sent(1, within_s=15)
        [message] = await drain(amqp, "risk_control", expect=1)
    payload = body(message)["payload"]
    assert payload["state"] == "HALTED"
    assert payload["reason"] == "funding spike"
    assert payload["requested_by"] == f"telegram:{CHAT}"
    assert reply.chat_id == CHAT and "halt requested" in reply.plain


async def test_resume_publishes_active(make_notify, telegram: FakeTelegram, amqp):
    async with make_notify():
        telegram.add_command(CHAT, "/resume")
        [reply] = await telegram.wait_sent(1, within_s=15)
        [message] = await drain(amqp, "risk_control", expect=1)
    assert body(message)["payload"]["state"] == "ACTIVE"
    assert "resume requested" in reply.plain


async def test_a_stranger_is_ignored(make_notify, telegram: FakeTelegram, amqp):
    async with make_notify():
        telegram.add_command(STRANGER, "/halt")
        telegram.add_command(STRANGER, "/close all")
        await wait_for(lambda: not telegram.pending_updates)
        await asyncio.sleep(1.0)
        messages = await drain(amqp, "risk_control") + await drain(amqp, "execute_control")
    assert messages == []
    assert telegram.texts() == []


async def test_close_asks_to_confirm_then_publishes(make_notify, telegram: FakeTelegram,
                                                    amqp):
    # EXECUTE unreachable: the close still goes out on the broker, with a warning.
    async with make_notify(execute_url=UNREACHABLE):
        telegram.add_command(CHAT, "/close BTCUSDT")
        [prompt] = await telegram.wait_sent(1, within_s=15)
        assert [b["callback_data"] for b in prompt.buttons] == ["close:BTCUSDT"]
        assert "EXECUTE is unreachable" in prompt.plain
        assert await drain(amqp, "execute_control", settle_s=0.3) == []
        telegram.add_callback(CHAT, "close:BTCUSDT", prompt.message_id)
        [message] = await drain(amqp, "execute_control", expect=1)
        await wait_for(lambda: telegram.edits and telegram.callback_answers)
    payload = body(message)["payload"]
    assert payload["symbol"] == "BTCUSDT" and payload["all"] is False
    assert payload["requested_by"] == f"telegram:{CHAT}"
    assert "sent" in (telegram.edits[-1].text or "")


async def test_help_lists_the_commands(make_notify, telegram: FakeTelegram):
    async with make_notify():
        telegram.add_command(CHAT, "/help")
        [reply] = await telegram.wait_sent(1, within_s=15)
    for command in ("/status", "/positions", "/pnl", "/halt", "/resume", "/close", "/help"):
        assert command in reply.plain


async def test_status_when_risk_is_unreachable(make_notify, telegram: FakeTelegram):
    async with make_notify(risk_url=UNREACHABLE, execute_url=UNREACHABLE):
        telegram.add_command(CHAT, "/status")
        telegram.add_command(CHAT, "/pnl")
        sent = await telegram.wait_sent(2, within_s=15)
    assert "RISK is unreachable" in sent[0].plain
    assert "EXECUTE is unreachable" in sent[1].plain
