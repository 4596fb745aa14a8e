"""Telegram commands (notify.md "Commands"): python-telegram-bot polling getUpdates.

Only chats in TELEGRAM_CHAT_IDS are obeyed; anything from another chat is logged and ignored
(no reply). `/halt` and `/resume` go out as `ChangeTradingState`, a confirmed `/close` as
`ClosePosition`, both on `phoenix95.control`; `/status`, `/positions` and `/pnl` read RISK's
and EXECUTE's HTTP APIs and never crash when those are unreachable."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from services.notify import messages
from services.notify.readers import (
    CLOSES_READ,
    ServiceReader,
    ServiceUnreachableError,
    closed_at,
)
from services.notify.settings import NotifySettings
from shared.contracts import Envelope
from shared.contracts.risk import ChangeTradingState, TradingState
from shared.contracts.trading import ClosePosition
from shared.messaging import Broker, topology
from shared.observability.logging import get_logger

log = get_logger(__name__)

HELP = ("<b>Phoenix 95 commands</b>\n"
        "/status: trading state, equity, today's PnL, open positions\n"
        "/positions: open positions\n"
        "/pnl: PnL today, 7 days, all time\n"
        "/halt [reason]: stop new entries\n"
        "/resume: trade again\n"
        "/close SYMBOL|all: close at market (asks to confirm)\n"
        "/help: this list")


class Commands:
    """The command handlers and the PTB Application that runs them."""

    def __init__(self, settings: NotifySettings, broker: Broker, reader: ServiceReader
                 ) -> None:
        assert settings.telegram_bot_token is not None
        self.settings = settings
        self.broker = broker
        self.allowed = set(settings.telegram_chat_ids)
        self.reader = reader
        builder = Application.builder().token(settings.telegram_bot_token.get_secret_value())
        if settings.telegram_api_base_url:
            builder = builder.base_url(settings.telegram_api_base_url)
        self.app = builder.build()
        allowed = filters.Chat(chat_id=list(self.allowed))
        for name, handler in (("help", self.help), ("start", self.help),
                              ("halt", self.halt), ("resume", self.resume),
                              ("close", self.close), ("status", self.status),
                              ("positions", self.positions), ("pnl", self.pnl)):
            self.app.add_handler(CommandHandler(name, handler, filters=allowed))
        self.app.add_handler(MessageHandler(~allowed, self.ignored))
        self.app.add_handler(CallbackQueryHandler(self.confirm_close, pattern=r"^close:"))
        self.app.add_error_handler(self.on_error)
        self._started = False

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._started = True  # so that stop() cleans up after a start that failed midway
        await self.app.initialize()
        await self.app.start()
        assert self.app.updater is not None
        await self.app.updater.start_polling(poll_interval=0.2, timeout=1)
        log.info("NOTIFY listening for Telegram commands", chats=sorted(self.allowed))

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            if self.app.updater is not None and self.app.updater.running:
                await self.app.updater.stop()
            if self.app.running:
                await self.app.stop()
            await self.app.shutdown()
        except Exception as exc:  # stopping must not fail NOTIFY's shutdown
            log.warning("telegram commands stop", error=str(exc))

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _chat_id(update: Update) -> int | None:
        chat = update.effective_chat
        return chat.id if chat is not None else None

    async def _reply(self, update: Update, text: str,
                     markup: InlineKeyboardMarkup | None = None) -> None:
        message = update.effective_message
        if message is None:
            return
        try:
            await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)
        except TelegramError as exc:
            log.warning("telegram reply failed", error=str(exc))

    async def _publish(self, payload: Any, routing_key: str) -> None:
        envelope = Envelope.wrap(payload, producer="notify", correlation_id=str(uuid.uuid4()))
        await self.broker.publish(envelope, topology.CONTROL.name, routing_key)

    # --- handlers --------------------------------------------------------------------------

    async def ignored(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        log.warning("telegram message from a chat not allowed: ignored",
                    chat_id=self._chat_id(update),
                    text=(message.text or "")[:100] if message is not None else None)

    async def help(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        await self._reply(update, HELP)

    async def _change_state(self, update: Update, state: TradingState, reason: str) -> None:
        chat_id = self._chat_id(update)
        command = ChangeTradingState(state=state, reason=reason,
                                     requested_by=f"telegram:{chat_id}")
        try:
            await self._publish(command, "control.trading_state")
        except Exception as exc:
            log.error("trading state command not published", error=str(exc))
            await self._reply(update, "⚠️ could not reach the message broker; try again")
            return
        log.info("trading state requested", state=state, chat_id=chat_id, reason=reason)
        word = "halt" if state == TradingState.HALTED else "resume"
        await self._reply(update, f"{word} requested")

    async def halt(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        reason = " ".join(context.args or []) or "telegram /halt"
        await self._change_state(update, TradingState.HALTED, reason)

    async def resume(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        reason = " ".join(context.args or []) or "telegram /resume"
        await self._change_state(update, TradingState.ACTIVE, reason)

    async def close(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = context.args or []
        if len(args) != 1:
            await self._reply(update, "usage: /close SYMBOL|all")
            return
        target = args[0].upper()
        if target != "ALL" and not target.isalnum():
            await self._reply(update, "usage: /close SYMBOL|all")
            return
        everything = target == "ALL"
        # What the button would close, shown with it; nothing to close, no button. EXECUTE
        # unreachable: the close still goes through the broker, unchecked.
        try:
            rows = await self.reader.get(self.settings.execute_url, "/positions", "EXECUTE",
                                   {"status": "open"})
        except ServiceUnreachableError:
            shown = ["⚠️ EXECUTE is unreachable: open positions not checked"]
        else:
            matching = [p for p in rows if everything or p.get("symbol") == target]
            if not matching:
                await self._reply(update, "No open positions." if everything
                                  else f"No open {html.escape(target)} position.")
                return
            shown = [self._position_line(p) for p in matching]
        data = "close:all" if everything else f"close:{target}"
        what = "ALL open positions" if everything else f"the {html.escape(target)} position"
        markup = InlineKeyboardMarkup([[InlineKeyboardButton("Confirm close",
                                                             callback_data=data)]])
        await self._reply(update, "\n".join([f"Close {what} at market?", *shown]), markup)

    async def confirm_close(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        chat_id = self._chat_id(update)
        if chat_id not in self.allowed:
            log.warning("telegram callback from a chat not allowed: ignored", chat_id=chat_id,
                        data=query.data)
            return
        target = (query.data or "").removeprefix("close:")
        everything = target == "all"
        command = ClosePosition(symbol=None if everything else target, all=everything,
                                requested_by=f"telegram:{chat_id}")
        try:
            await self._publish(command, "control.close_position")
        except Exception as exc:
            log.error("close command not published", error=str(exc))
            await self._answer(query, "could not reach the message broker")
            return
        log.info("close requested", target=target, chat_id=chat_id)
        await self._answer(query, "close sent")
        what = "all positions" if everything else html.escape(target)
        try:
            await query.edit_message_text(f"Close of {what} sent.")
        except TelegramError as exc:
            log.warning("telegram edit failed", error=str(exc))

    @staticmethod
    async def _answer(query: Any, text: str) -> None:
        try:
            await query.answer(text)
        except TelegramError as exc:
            log.warning("telegram callback answer failed", error=str(exc))

    async def status(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        try:
            risk = await self.reader.get(self.settings.risk_url, "/status", "RISK")
        except ServiceUnreachableError as exc:
            await self._reply(update, f"⚠️ {exc.service} is unreachable")
            return
        positions = risk.get("open_positions") or []
        lines = [
            "<b>Status</b>",
            f"Trading: <b>{messages.esc(risk.get('trading_state'))}</b>"
            + (f" ({messages.esc(risk['reason'])})" if risk.get("reason") else ""),
            f"Equity: {messages.usdt(risk.get('equity'))}",
            f"Today: {messages.usdt(risk.get('daily_pnl'), signed=True)}",
            f"Open positions: {len(positions)}",
        ]
        lines += [f"• {messages.esc(p.get('symbol'))} {messages.esc(p.get('side'))} "
                  f"{messages.num(p.get('quantity'))} @ {messages.num(p.get('entry_price'))}"
                  for p in positions]
        await self._reply(update, "\n".join(lines))

    async def positions(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        try:
            rows = await self.reader.get(self.settings.execute_url, "/positions", "EXECUTE",
                                   {"status": "open"})
        except ServiceUnreachableError as exc:
            await self._reply(update, f"⚠️ {exc.service} is unreachable")
            return
        if not rows:
            await self._reply(update, "No open positions.")
            return
        await self._reply(update, "\n".join(["<b>Open positions</b>",
                                             *map(self._position_line, rows)]))

    @staticmethod
    def _position_line(p: dict[str, Any]) -> str:
        """One of EXECUTE's open positions (GET /positions)."""
        pnl = p.get("unrealized_pnl")
        return (f"• {messages.esc(p.get('symbol'))} {messages.esc(p.get('side'))} "
                f"{messages.num(p.get('quantity'))} @ {messages.num(p.get('entry_price'))}"
                + (f", PnL {messages.usdt(pnl, signed=True)}" if pnl is not None else "")
                + (f", liq {messages.num(p.get('liquidation_price'))}"
                   if p.get("liquidation_price") else ""))

    async def pnl(self, update: Update, _: ContextTypes.DEFAULT_TYPE) -> None:
        try:
            account = await self.reader.account()
            closed = await self.reader.closed_positions()
        except ServiceUnreachableError as exc:
            await self._reply(update, f"⚠️ {exc.service} is unreachable")
            return
        now = datetime.now(UTC)
        week_ago = now - timedelta(days=7)
        week = total = 0.0
        for p in closed:
            realized = float(p.get("realized_pnl") or 0.0)
            total += realized
            when = closed_at(p)
            if when is not None and when >= week_ago:
                week += realized
        # EXECUTE gives the latest CLOSES_READ closes at most: say so when capped.
        capped = f", last {len(closed)} closes" if len(closed) >= CLOSES_READ else ""
        lines = ["<b>PnL</b>",
                 f"Today: {messages.usdt(account.get('daily_pnl'), signed=True)}",
                 f"7 days (realized): {messages.usdt(week, signed=True)}",
                 f"All time (realized{capped}): {messages.usdt(total, signed=True)}"]
        await self._reply(update, "\n".join(lines))

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram command failed", error=repr(context.error))
