"""NOTIFY's consumers: every event and RISK's alerts become Telegram messages, each acked
only once Telegram accepted it; a backlog goes out merged into digests (delivery.py). With
Telegram off, a message is one log line and nothing else (no chat, nothing to record)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.delivery import RETRY_CAP_S, ChatDelivery
from services.notify.messages import render
from services.notify.metrics import PIPELINE_LATENCY
from services.notify.settings import NotifySettings
from services.notify.telegram import TelegramSender
from shared.contracts import Envelope, MessagePayload, OrderUpdated, SignalReceived
from shared.messaging import Broker, Consumer, TransientError

# Receipt times of recent signals, for the webhook → filled latency (bounded: memory only).
RECEIPTS_KEPT = 10_000
PREFETCH = 100
# How long a handler waits for Telegram before the consumer retries it (well below
# RabbitMQ's 30-minute consumer timeout, so the consumer's give-up rules still apply).
DELIVERY_WAIT_S = 60.0


class Notifier:
    def __init__(self, settings: NotifySettings, sender: TelegramSender,
                 sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sender = sender
        self.sessions = sessions
        self._receipts: OrderedDict[str, datetime] = OrderedDict()
        self._chats: dict[int, ChatDelivery] = {}

    def observe(self, payload: MessagePayload) -> None:
        if isinstance(payload, SignalReceived):
            self._receipts[payload.signal.signal_id] = payload.signal.received_at
            while len(self._receipts) > RECEIPTS_KEPT:
                self._receipts.popitem(last=False)
        elif isinstance(payload, OrderUpdated) and payload.status == "FILLED" \
                and not payload.reduce_only and payload.signal_id in self._receipts:
            received = self._receipts.pop(payload.signal_id)
            PIPELINE_LATENCY.observe((payload.updated_at - received).total_seconds())

    async def handle(self, envelope: Envelope, payload: MessagePayload) -> None:
        self.observe(payload)
        text = render(envelope.type, payload, notify_holds=self.settings.notify_holds)
        if text is not None:
            await self.deliver(envelope.message_id, envelope.type, text)

    async def deliver(self, message_id: str, event_type: str, text: str, *,
                      keep_queued: bool = True) -> None:
        """To every chat that has not had it yet (a redelivery sends nothing twice); returns
        once Telegram accepted it in each. `keep_queued` (a consumer's message): not accepted
        within DELIVERY_WAIT_S, TransientError, the message staying queued in its place for
        the consumer's retry to join. Otherwise a failed attempt raises TransientError at once
        and the message is dropped. Telegram off: logged, at once."""
        if not self.sender.enabled:
            # No chat to deliver to, so nothing to record or to keep in order: a redelivered
            # event is only logged again.
            self.sender.log_instead(message_id, event_type, text)
            return
        waits = [self._chat(chat_id).submit(message_id, event_type, text,
                                            keep_queued=keep_queued)
                 for chat_id in self.sender.chat_ids]
        done, pending = await asyncio.wait(waits, timeout=DELIVERY_WAIT_S if keep_queued
                                           else None)
        if pending:
            raise TransientError("Telegram has not accepted it yet (still queued)")
        for future in done:
            future.result()

    def _chat(self, chat_id: int) -> ChatDelivery:
        if chat_id not in self._chats:
            self._chats[chat_id] = ChatDelivery(chat_id, self.sender, self.sessions)
        return self._chats[chat_id]

    async def close(self) -> None:
        for chat in self._chats.values():
            await chat.close()


def consumers(broker: Broker, notifier: Notifier) -> list[Consumer]:
    # Up to PREFETCH messages in flight per queue: a backlog reaches the per-chat delivery,
    # which merges it into digests in the order it came (delivery.py). The consumer's retry
    # backoff is capped like the delivery's, so that acks follow within seconds once
    # Telegram is back.
    return [Consumer(broker, queue, notifier.handle, prefetch=PREFETCH,
                     backoff_cap_s=RETRY_CAP_S) for queue in ("notify_events", "risk_alerts")]
