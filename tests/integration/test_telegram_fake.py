"""The local imitation of the Telegram Bot API (tests/fakes/telegram.py), through the real
python-telegram-bot: what PTB sends arrives as Telegram would see it, and what the fake
answers becomes the exceptions PTB raises against Telegram itself (RetryAfter, NetworkError,
TimedOut, InvalidToken, BadRequest, Conflict)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter, TimedOut
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)
from telegram.request import HTTPXRequest

from services.notify import messages
from shared.contracts import (
    Action,
    Decision,
    PositionClosed,
    PositionOpened,
    Reason,
    ReasonCode,
    Scores,
    Signal,
    SignalAnalyzed,
)
from tests.fakes.telegram import TOKEN, FakeTelegram, parse_html

CHAT = 424242
GROUP = -1001234567890
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=tg.url) as real_bot:
        yield real_bot


async def test_get_me_is_the_fake_bot(tg: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.is_bot and me.username == "phoenix95_test_bot"
    assert tg.url == f"http://127.0.0.1:{tg.port}/bot"
    assert [call.method for call in tg.requests][:2] == ["getMe", "getMe"]


async def test_send_message_is_recorded_with_its_html(tg: FakeTelegram, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Close BTCUSDT",
                                                           callback_data="close:BTCUSDT")]])
    before = time.monotonic()
    message = await bot.send_message(CHAT, "<b>Position closed</b> · PnL +12.50 &amp; more",
                                     parse_mode=ParseMode.HTML, reply_markup=keyboard)

    assert len(tg.sent) == 1
    sent = tg.sent[0]
    assert sent.chat_id == CHAT
    assert sent.text == "<b>Position closed</b> · PnL +12.50 &amp; more"
    assert sent.parse_mode == "HTML"
    assert sent.reply_markup == {"inline_keyboard": [[{"text": "Close BTCUSDT",
                                                       "callback_data": "close:BTCUSDT"}]]}
    assert sent.buttons[0]["callback_data"] == "close:BTCUSDT"
    assert sent.plain == "Position closed · PnL +12.50 & more"
    assert before <= sent.at <= time.monotonic()
    assert abs((datetime.now(UTC) - sent.sent_at).total_seconds()) < 5
    # Answered like Telegram: PTB builds a full Message from it.
    assert message.message_id == sent.message_id == 1
    assert message.chat.id == CHAT and message.chat.type == "private"
    assert message.from_user is not None and message.from_user.is_bot
    assert message.text == sent.plain
    assert message.text_html == "<b>Position closed</b> · PnL +12.50 &amp; more"
    assert message.reply_markup == keyboard
    assert abs(message.date.timestamp() - time.time()) < 5
    # Message ids count per chat.
    assert (await bot.send_message(CHAT, "second")).message_id == 2
    assert (await bot.send_message(GROUP, "to the group")).chat.type == "supergroup"
    assert tg.texts(CHAT) == [sent.text, "second"]


async def test_retry_after_is_raised_with_its_value(tg: FakeTelegram, bot: Bot,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    tg.rate_limit(times=2, retry_after=1)

    for _ in range(2):
        with pytest.raises(RetryAfter) as caught:
            await bot.send_message(CHAT, "hello")
        assert caught.value.retry_after == timedelta(seconds=1)
    await asyncio.sleep(1)
    await bot.send_message(CHAT, "hello")

    attempts = tg.calls("sendMessage")
    assert [a.status for a in attempts] == [429, 429, 200]
    assert attempts[0].description == "Too Many Requests: retry after 1"
    assert attempts[2].at - attempts[1].at >= 1.0  # the delay a client honoured, measured
    assert [m.text for m in tg.sent] == ["hello"]


async def test_flood_control_per_chat(tg: FakeTelegram, bot: Bot,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    tg.flood_interval_s = 1.0
    await bot.send_message(CHAT, "one")
    await bot.send_message(GROUP, "another chat is not limited")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(CHAT, "two")
    assert caught.value.retry_after == timedelta(seconds=1)
    await asyncio.sleep(1.0)
    await bot.send_message(CHAT, "two")
    assert tg.texts(CHAT) == ["one", "two"]


async def test_down_refuses_connections_until_healed(tg: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(CHAT, "before")  # a keep-alive connection is open
    port = tg.port
    await tg.down()
    for _ in range(2):
        with pytest.raises(NetworkError):
            await bot.send_message(CHAT, "during")
    await tg.heal()
    assert tg.port == port
    await bot.send_message(CHAT, "after")
    assert tg.texts() == ["before", "after"]


async def test_down_502_is_a_network_error(tg: FakeTelegram, bot: Bot) -> None:
    await tg.down("502")
    with pytest.raises(NetworkError) as caught:
        await bot.send_message(CHAT, "during")
    assert "Bad Gateway" in str(caught.value)
    assert tg.calls("sendMessage")[0].status == 502
    await tg.heal()
    await bot.send_message(CHAT, "after")
    assert tg.texts() == ["after"]


async def test_slow_answers_time_out(tg: FakeTelegram) -> None:
    tg.latency_s = 0.5
    async with Bot(TOKEN, base_url=tg.url, request=HTTPXRequest(read_timeout=2)) as bot:
        tg.latency_s = 0.5
        with pytest.raises(TimedOut):
            await bot.send_message(CHAT, "slow", read_timeout=0.1)


async def test_wrong_token_is_refused(tg: FakeTelegram) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("7000000001:AAnotTheRightToken", base_url=tg.url):
            pass
    assert tg.requests[-1].status == 401 and not tg.requests[-1].token_ok


async def test_injected_errors(tg: FakeTelegram, bot: Bot) -> None:
    tg.fail("sendMessage", 400, "Bad Request: chat not found")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(CHAT, "x")
    await bot.send_message(CHAT, "x")  # one time only
    assert tg.texts() == ["x"]


async def test_telegram_checks_text_and_html(tg: FakeTelegram, bot: Bot) -> None:
    for text, error in [
        ("a < b", "Unsupported start tag"),
        ("<b>bold", "Can't find end tag"),
        ("<b>x</i>", "Unmatched end tag"),
        ("<br/>line", "Unsupported start tag"),
        ("<span>x</span>", "must have class"),
        ("   ", "Message text is empty"),
        ("x" * 4097, "Message is too long"),
    ]:
        with pytest.raises(BadRequest, match=f"(?i){error}"):  # PTB capitalizes the text
            await bot.send_message(CHAT, text, parse_mode=ParseMode.HTML)
    # At the limit after parsing: 4096 characters of text, tags not counted.
    await bot.send_message(CHAT, "<b>" + "x" * 4096 + "</b>", parse_mode=ParseMode.HTML)
    await bot.send_message(CHAT, "x" * 4096)
    # Without a parse mode nothing is parsed; a bare & is kept as Telegram does.
    await bot.send_message(CHAT, "a < b")
    await bot.send_message(CHAT, "fish & chips", parse_mode=ParseMode.HTML)
    assert tg.sent[-1].plain == "fish & chips"
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(CHAT, "x", reply_markup=InlineKeyboardMarkup(
            [[InlineKeyboardButton("x", callback_data="d" * 65)]]))


def test_html_entities_and_offsets() -> None:
    plain, entities = parse_html('🟢 <b>PnL</b> <a href="https://x.test/?a=1&amp;b=2">link</a> '
                                 '<code>&lt;code&gt;</code> &#36;')
    assert plain == "🟢 PnL link <code> $"
    assert entities == [
        {"type": "bold", "offset": 3, "length": 3},  # the emoji is two UTF-16 units
        {"type": "text_link", "offset": 7, "length": 4, "url": "https://x.test/?a=1&b=2"},
        {"type": "code", "offset": 12, "length": 6},
    ]


async def test_edit_and_callbacks(tg: FakeTelegram, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Confirm", callback_data="ok")]])
    sent = await bot.send_message(CHAT, "Close <b>all</b>?", parse_mode=ParseMode.HTML,
                                  reply_markup=keyboard)
    query_id = tg.add_callback(CHAT, "ok", sent.message_id)

    updates = await bot.get_updates()
    assert len(updates) == 1
    query = updates[0].callback_query
    assert query is not None and query.id == query_id and query.data == "ok"
    assert query.message is not None and query.message.message_id == sent.message_id
    assert query.message.chat.id == CHAT and query.from_user.id == CHAT
    assert await query.answer("Closing")
    assert tg.callback_answers[0].callback_query_id == query_id
    assert tg.callback_answers[0].text == "Closing"
    with pytest.raises(BadRequest, match="Query is too old"):
        await query.answer("twice")

    edited = await bot.edit_message_text("Closing <b>all</b>…", CHAT, sent.message_id,
                                         parse_mode=ParseMode.HTML)
    assert not isinstance(edited, bool) and edited.text == "Closing all…"
    assert edited.edit_date is not None
    assert tg.edits[0].text == "Closing <b>all</b>…" and tg.edits[0].reply_markup is None
    message = tg.message(CHAT, sent.message_id)
    assert message is not None and "reply_markup" not in message
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("Closing <b>all</b>…", CHAT, sent.message_id,
                                    parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", CHAT, 999)
    assert len(tg.sent) == 1  # edits are not sends


async def test_get_updates_serves_injected_commands(tg: FakeTelegram, bot: Bot) -> None:
    first = tg.add_command(CHAT, "/status")
    tg.add_command(GROUP, "/close BTCUSDT", user_id=77)

    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [first, first + 1]
    message = updates[0].message
    assert message is not None and message.text == "/status"
    assert message.chat.id == CHAT and message.from_user is not None
    assert message.parse_entities() and message.entities[0].type == "bot_command"
    second = updates[1].message
    assert second is not None and second.chat.id == GROUP and second.from_user is not None
    assert second.from_user.id == 77 and second.text == "/close BTCUSDT"
    assert second.entities[0].length == len("/close")

    # Served again until confirmed by an offset.
    assert len(await bot.get_updates()) == 2
    assert await bot.get_updates(offset=first + 2) == ()
    assert tg.pending_updates == []


async def test_long_polling_waits_for_an_update(tg: FakeTelegram, bot: Bot) -> None:
    async def later() -> None:
        await asyncio.sleep(0.3)
        tg.add_command(CHAT, "/help")

    started = time.monotonic()
    task = asyncio.create_task(later())
    updates = await bot.get_updates(timeout=5)
    await task
    assert 0.25 <= time.monotonic() - started < 3
    assert updates[0].message is not None and updates[0].message.text == "/help"


async def test_a_second_poller_gets_conflict(tg: FakeTelegram, bot: Bot) -> None:
    """Two bots polling with the same token (two NOTIFY instances): the held poll ends with
    409 Conflict, as Telegram does."""
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    async with Bot(TOKEN, base_url=tg.url) as other:
        second = asyncio.create_task(other.get_updates(timeout=1))
        with pytest.raises(Conflict):
            await first
        assert await second == ()


async def test_commands_menu(tg: FakeTelegram, bot: Bot) -> None:
    assert await bot.get_my_commands() == ()
    await bot.set_my_commands([BotCommand("status", "Trading state"),
                               BotCommand("close", "Close a position")])
    assert [c.command for c in await bot.get_my_commands()] == ["status", "close"]
    assert tg.commands[0] == {"command": "status", "description": "Trading state"}
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Name", "x")])


async def test_an_application_polls_and_answers(tg: FakeTelegram) -> None:
    """PTB's own Application: deleteWebhook, getUpdates long polling, handlers, replies."""
    seen: list[str] = []

    async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_chat is not None and update.effective_message is not None
        seen.append(" ".join(context.args or []))
        await update.effective_message.reply_html(
            "<b>ACTIVE</b>", reply_markup=InlineKeyboardMarkup(
                [[InlineKeyboardButton("Halt", callback_data="halt")]]))

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer()
        await query.edit_message_text(f"pressed {query.data}")

    app = Application.builder().token(TOKEN).base_url(tg.url).build()
    app.add_handler(CommandHandler("status", status))
    app.add_handler(CallbackQueryHandler(pressed))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0.0, timeout=timedelta(seconds=2))
        try:
            tg.add_command(CHAT, "/status@another_bot")  # not for this bot: ignored
            tg.add_command(CHAT, "/status@phoenix95_test_bot now")
            (reply,) = await tg.wait_sent(1)
            assert reply.text == "<b>ACTIVE</b>" and reply.parse_mode == "HTML"
            tg.add_callback(CHAT, "halt", reply.message_id)
            for _ in range(50):
                if tg.edits:
                    break
                await asyncio.sleep(0.05)
        finally:
            await app.updater.stop()
            await app.stop()
    assert seen == ["now"]
    assert tg.edits[0].text == "pressed halt"
    assert len(tg.callback_answers) == 1
    assert tg.webhook_deleted == 1


async def test_notify_messages_are_accepted_by_telegram(tg: FakeTelegram, bot: Bot) -> None:
    """messages.py output is HTML Telegram parses, also once split and as a digest."""
    signal = Signal(signal_id="s-1", symbol="BTCUSDT", action=Action.LONG, price=60_000,
                    confidence=0.9, strategy="<Trend> & Co", received_at=NOW)
    texts = [
        messages.render("signal.analyzed", SignalAnalyzed(
            signal=signal, decision=Decision.HOLD, leverage=10, entry_price=60_000,
            scores=Scores(technical=0.9, phoenix=0.8, market=0.5, composite=0.7,
                          phoenix95=0.7, final_confidence=0.8),
            reasons=[Reason(code=ReasonCode.BELOW_EXECUTION_THRESHOLD, value=0.8,
                            limit=0.85, message="F < 0.85")])),
        messages.render("position.opened", PositionOpened(
            position_id="p-1", symbol="BTCUSDT", side="long", quantity=0.05,
            entry_price=60_000, margin=150, leverage=20, stop_loss=58_800,
            take_profit=62_400, liquidation_price=57_300, opened_at=NOW)),
        messages.render("position.closed", PositionClosed(
            position_id="p-1", symbol="BTCUSDT", side="long", quantity=0.05,
            entry_price=60_000, exit_price=62_400, realized_pnl=118.8, roe=0.792,
            reason="take_profit", closed_at=NOW)),
        messages.alert("<Disk> full", "critical", "a & b < c"),
    ]
    for text in texts:
        assert text is not None
        await bot.send_message(CHAT, text, parse_mode=ParseMode.HTML)
    assert "<Trend> & Co" in tg.sent[0].plain
    long_text = messages.digest([t for t in texts if t] * 40)
    pieces = messages.split_text(long_text)
    assert len(pieces) > 1
    for piece in pieces:
        await bot.send_message(CHAT, piece, parse_mode=ParseMode.HTML)
    shown = "\n".join(m.plain for m in tg.sent[len(texts):])
    assert shown.count("Position opened") == 40
