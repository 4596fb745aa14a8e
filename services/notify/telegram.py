"""Sending to Telegram with python-telegram-bot: paced per chat, `RetryAfter` honoured,
network errors left to the consumer's retries, so a message is acked only once Telegram has
accepted it. With no token, Telegram is off: messages are only logged (`log_instead`)."""

from __future__ import annotations

import asyncio
import time

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut

from services.notify.messages import split_text
from services.notify.metrics import TELEGRAM_ENABLED, TELEGRAM_MESSAGES
from services.notify.settings import NotifySettings
from shared.messaging import TransientError
from shared.observability.logging import get_logger

log = get_logger(__name__)


def _seconds(retry_after: object) -> float:
    total = getattr(retry_after, "total_seconds", None)
    return float(total() if callable(total) else retry_after)  # type: ignore[arg-type]


class TelegramSender:
    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.chat_ids = list(settings.telegram_chat_ids)
        self.bot: Bot | None = None
        if settings.telegram_enabled and settings.telegram_bot_token is not None:
            kwargs = {"base_url": settings.telegram_api_base_url} \
                if settings.telegram_api_base_url else {}
            self.bot = Bot(settings.telegram_bot_token.get_secret_value(), **kwargs)
        TELEGRAM_ENABLED.set(1 if self.bot else 0)
        self._last_sent: dict[int, float] = {}
        # Per chat: a chat waiting for its turn does not hold up the others.
        self._pace: dict[int, asyncio.Lock] = {}
        self._initialized = False

    @property
    def enabled(self) -> bool:
        return self.bot is not None

    def log_instead(self, message_id: str, event_type: str, text: str) -> None:
        """Telegram off: the message is one line in the log, and that is all."""
        log.info("telegram off; message logged", message_id=message_id,
                 event_type=event_type, text=text)
        TELEGRAM_MESSAGES.labels("logged").inc()

    async def send(self, chat_id: int, text: str) -> None:
        """Deliver `text` (split if long) or raise TransientError: never silently drop."""
        await self._initialize()
        for part in split_text(text):
            await self._send_part(chat_id, part)

    async def _initialize(self) -> None:
        assert self.bot is not None
        if self._initialized:
            return
        try:
            await self.bot.initialize()
        except (NetworkError, TimedOut) as exc:
            raise TransientError(f"Telegram unreachable: {type(exc).__name__}") from exc
        self._initialized = True

    async def _send_part(self, chat_id: int, text: str) -> None:
        assert self.bot is not None
        parse_mode: str | None = ParseMode.HTML
        while True:
            await self._wait_turn(chat_id)
            try:
                await self.bot.send_message(chat_id=chat_id, text=text, parse_mode=parse_mode)
                TELEGRAM_MESSAGES.labels("sent").inc()
                return
            except RetryAfter as exc:
                wait = _seconds(exc.retry_after)
                log.warning("telegram flood control: waiting", retry_after_s=wait)
                TELEGRAM_MESSAGES.labels("retried").inc()
                await asyncio.sleep(wait)
            except (TimedOut, NetworkError) as exc:
                TELEGRAM_MESSAGES.labels("retried").inc()
                raise TransientError(f"Telegram unreachable: {type(exc).__name__}") from exc
            except BadRequest as exc:
                if parse_mode is None:
                    TELEGRAM_MESSAGES.labels("failed").inc()
                    log.error("telegram refused a message", error=str(exc))
                    return
                parse_mode = None  # markup Telegram cannot parse: send the text as it is
            except TelegramError as exc:
                TELEGRAM_MESSAGES.labels("failed").inc()
                log.error("telegram refused a message", error=str(exc))
                return

    async def ready(self, chat_id: int) -> None:
        """Wait until `chat_id` may have its next message, without taking the turn: what
        comes in meanwhile can still join the message sent then."""
        await self._sleep_until_turn(chat_id)

    async def _sleep_until_turn(self, chat_id: int) -> None:
        last = self._last_sent.get(chat_id, 0.0)
        wait = last + self.settings.telegram_min_interval_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _wait_turn(self, chat_id: int) -> None:
        async with self._pace.setdefault(chat_id, asyncio.Lock()):
            await self._sleep_until_turn(chat_id)
            self._last_sent[chat_id] = time.monotonic()

    async def close(self) -> None:
        if self.bot is not None and self._initialized:
            try:
                await self.bot.shutdown()
            except Exception as exc:
                log.debug("telegram shutdown", error=str(exc))
