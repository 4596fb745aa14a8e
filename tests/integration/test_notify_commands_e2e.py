"""Telegram commands end to end: BRAIN, RISK and EXECUTE (paper) in-process, RISK and EXECUTE
also served over real HTTP, NOTIFY reading them; everything done through the Telegram
imitation, as the operator in the allowed chat (or a stranger) would."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.fakes.telegram import FakeTelegram, SentMessage
from tests.integration.conftest import Brain, alert
from tests.integration.execute_fixtures import (
    KEY,
    Execute,
    protected_positions,
    until,
)
from tests.integration.notify_fixtures import CHAT, STRANGER, first_told
from tests.integration.risk_fixtures import Risk
from tests.integration.serving import served

BTC, ETH = 43123.5, 2500.0


@dataclass
class Live:
    brain: Brain
    risk: Risk
    execute: Execute
    telegram: FakeTelegram

    async def ask(self, command: str, heading: str) -> SentMessage:
        """Send `command` from the operator's chat; the first later message there with
        `heading` in its first line (event notifications arrive in between)."""
        after = len(self.telegram.sent)
        self.telegram.add_command(CHAT, command)
        return await self.reply(heading, after)

    async def reply(self, heading: str, after: int) -> SentMessage:
        async def found() -> SentMessage | None:
            return next((m for m in self.telegram.sent[after:]
                         if m.chat_id == CHAT and heading in m.plain.splitlines()[0]), None)

        return await until(found, 15, what=f"a message headed {heading!r}")

    async def event(self, heading: str, after: int) -> str:
        """The plain text of the first event told in the operator's chat from the `after`th
        message sent on with `heading` in its first line: events that pile up while one is
        being sent go out merged into one digest, so they are looked for inside digests too
        (a command's reply always goes alone: `reply`)."""
        async def found() -> str | None:
            return first_told(self.telegram.sent, heading, after)

        return await until(found, 15, what=f"an event headed {heading!r}")

    async def open(self, symbol: str, price: float, alert_id: str) -> dict[str, Any]:
        """A real position: a price, then a webhook through BRAIN, RISK and EXECUTE."""
        await self.execute.tick(symbol, price)
        response = await self.brain.client.post("/webhook", json=alert(
            symbol=symbol, price=str(price), alert_id=alert_id,
            sent_at=datetime.now(UTC).isoformat()))
        assert response.status_code == 202, response.text

        async def opened() -> list[dict[str, Any]]:
            return [p for p in await self.execute.positions() if p["symbol"] == symbol]

        [position] = await until(opened, what=f"the {symbol} position")
        await protected_positions(self.execute)
        return position

    async def state(self) -> str:
        return (await self.risk.status())["trading_state"]


@pytest.fixture
async def live(system, make_notify, telegram):
    brain, risk, execute = system
    async with served(risk.app) as risk_url, served(execute.app) as execute_url, \
            make_notify(risk_url=risk_url, execute_url=execute_url):
        yield Live(brain, risk, execute, telegram)


def usdt(value: float) -> str:
    return f"{value:,.2f}"


def signed(value: float) -> str:
    return f"{value:+,.2f}"


async def test_halt_then_resume_change_risks_trading_state(live: Live):
    start = len(live.telegram.sent)
    await live.ask("/halt maintenance", "halt requested")

    async def halted() -> dict[str, Any] | None:
        status = await live.risk.status()
        return status if status["trading_state"] == "HALTED" else None

    status = await until(halted, what="RISK halted")
    assert status["reason"] == "maintenance"
    assert status["changed_by"] == f"telegram:{CHAT}"
    # RISK's own word that it happened reaches the chat too.
    changed = await live.event("Trading HALTED (was ACTIVE)", start)
    assert changed.splitlines()[1:] == ["Reason: maintenance", f"By: telegram:{CHAT}"]

    # Halted: a new webhook's entry is refused, and the chat is told why.
    after = len(live.telegram.sent)
    response = await live.brain.client.post("/webhook", json=alert(
        alert_id="while-halted", sent_at=datetime.now(UTC).isoformat()))
    assert response.status_code == 202, response.text
    refusal = await live.event("🚫 Rejected by RISK", after)
    assert "TRADING_HALTED" in refusal and "BTCUSDT" in refusal
    assert await live.execute.positions() == []

    shown = await live.ask("/status", "Status")
    assert "Trading: HALTED (maintenance)" in shown.plain

    start = len(live.telegram.sent)
    await live.ask("/resume", "resume requested")

    async def active() -> bool:
        return await live.state() == "ACTIVE"

    await until(active, what="RISK active again")
    await live.event("Trading ACTIVE (was HALTED)", start)


async def test_close_symbol_waits_for_the_confirm_button(live: Live):
    position = await live.open("BTCUSDT", BTC, "close-me")
    nothing = await live.ask("/close ETHUSDT", "No open ETHUSDT position")
    assert nothing.buttons == []
    prompt = await live.ask("/close btcusdt", "Close the BTCUSDT position at market?")
    assert [b["callback_data"] for b in prompt.buttons] == ["close:BTCUSDT"]
    assert prompt.plain.splitlines()[1].startswith(
        f"• BTCUSDT long 0.092 @ {position['entry_price']:.8g}")

    await asyncio.sleep(1.0)  # what an early close would need to show
    assert [p["position_id"] for p in await live.execute.positions()] == \
        [position["position_id"]]

    after = len(live.telegram.sent)
    live.telegram.add_callback(CHAT, "close:BTCUSDT", prompt.message_id)

    async def closed() -> list[dict[str, Any]]:
        return await live.execute.positions("closed")

    [done] = await until(closed, what="the close")
    assert done["position_id"] == position["position_id"]
    assert done["close_reason"] == "manual"
    assert await live.execute.positions() == []
    confirmation = await live.event("Position closed · BTCUSDT", after)
    assert "Reason: manual close" in confirmation
    [edit] = live.telegram.edits
    assert edit.message_id == prompt.message_id and edit.text == "Close of BTCUSDT sent."
    assert edit.reply_markup is None  # the button is gone: it cannot be pressed twice
    assert [a.text for a in live.telegram.callback_answers] == ["close sent"]


async def test_close_all_closes_every_position_after_the_button(live: Live):
    await live.open("BTCUSDT", BTC, "all-1")
    await live.open("ETHUSDT", ETH, "all-2")
    prompt = await live.ask("/close all", "Close ALL open positions at market?")
    assert [b["callback_data"] for b in prompt.buttons] == ["close:all"]
    assert sorted(line.split()[1] for line in prompt.plain.splitlines()[1:]) == \
        ["BTCUSDT", "ETHUSDT"]
    assert len(await live.execute.positions()) == 2

    live.telegram.add_callback(CHAT, "close:all", prompt.message_id)

    async def both_closed() -> list[dict[str, Any]]:
        closed = await live.execute.positions("closed")
        return closed if len(closed) == 2 else []

    closed = await until(both_closed, what="both closes")
    assert sorted(p["symbol"] for p in closed) == ["BTCUSDT", "ETHUSDT"]
    assert {p["close_reason"] for p in closed} == {"manual"}
    assert await live.execute.positions() == []


async def test_status_positions_and_pnl_show_the_real_numbers(live: Live):
    fresh = await live.ask("/status", "Status")
    assert "Trading: ACTIVE" in fresh.plain
    assert f"Equity: {usdt(10_000)}" in fresh.plain
    assert "Open positions: 0" in fresh.plain
    assert (await live.ask("/positions", "No open positions")).plain == "No open positions."

    position = await live.open("BTCUSDT", BTC, "numbers")
    entry = f"{position['entry_price']:.8g}"
    line = f"BTCUSDT long 0.092 @ {entry}"

    async def risk_sees_it() -> bool:
        return len((await live.risk.status())["open_positions"]) == 1

    await until(risk_sees_it, what="RISK's view of the position")
    status = await live.ask("/status", "Status")
    assert "Open positions: 1" in status.plain and f"• {line}" in status.plain

    mark = BTC + 100
    await live.execute.tick("BTCUSDT", mark, mark=mark)

    async def marked() -> dict[str, Any] | None:
        [p] = await live.execute.positions()
        return p if p["mark_price"] == mark else None

    view = await until(marked, what="the new mark")
    assert view["unrealized_pnl"] == pytest.approx((mark - position["entry_price"]) * 0.092)
    positions = await live.ask("/positions", "Open positions")
    assert f"• {line}, PnL {signed(view['unrealized_pnl'])}" in positions.plain
    assert f"liq {view['liquidation_price']:.8g}" in positions.plain

    # Take-profit: one closed trade, the account's only change today.
    await live.execute.tick("BTCUSDT", 44000.0, mark=44000.0)

    async def closed() -> list[dict[str, Any]]:
        return await live.execute.positions("closed")

    [done] = await until(closed, what="the take-profit")
    realized = done["realized_pnl"]
    assert realized > 0
    account = (await live.execute.client.get("/account", headers=KEY)).json()
    assert account["equity"] == pytest.approx(10_000 + realized)

    pnl = await live.ask("/pnl", "PnL")
    assert pnl.plain.splitlines()[1:] == [
        f"Today: {signed(realized)}",
        f"7 days (realized): {signed(realized)}",
        f"All time (realized): {signed(realized)}",
    ]

    async def risk_caught_up() -> bool:
        status = await live.risk.status()
        return not status["open_positions"] and \
            status["equity"] == pytest.approx(account["equity"])

    await until(risk_caught_up, what="RISK's account")
    after = await live.ask("/status", "Status")
    assert f"Equity: {usdt(10_000 + realized)}" in after.plain
    assert f"Today: {signed(realized)}" in after.plain
    assert "Open positions: 0" in after.plain


async def test_a_stranger_gets_nothing_done(live: Live):
    position = await live.open("BTCUSDT", BTC, "stranger")
    sent_before = len(live.telegram.sent)
    for command in ("/halt now", "/close BTCUSDT", "/close all", "/status", "/positions",
                    "/pnl", "/help", "/resume"):
        live.telegram.add_command(STRANGER, command)
    live.telegram.add_callback(STRANGER, "close:BTCUSDT", 1)
    live.telegram.add_callback(STRANGER, "close:all", 1)
    # Updates are handled in order: once the operator's /help is answered, the stranger's
    # were handled too; then a moment for anything they might have published.
    await live.ask("/help", "Phoenix 95 commands")
    await asyncio.sleep(1.0)

    assert [m for m in live.telegram.sent if m.chat_id == STRANGER] == []
    assert [m.plain.splitlines()[0] for m in live.telegram.sent[sent_before:]] == \
        ["Phoenix 95 commands"]
    assert live.telegram.edits == [] and live.telegram.callback_answers == []
    assert await live.state() == "ACTIVE"
    assert [p["position_id"] for p in await live.execute.positions()] == \
        [position["position_id"]]
