"""NOTIFY's consumers: every event and RISK's alerts become Telegram messages, each acked
only once Telegram accepted it (or Telegram is off and it was logged)."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notify.messages import render
from services.notify.metrics import PIPELINE_LATENCY
from services.notify.models import Notification
from services.notify.settings import NotifySettings
from services.notify.telegram import TelegramSender
from shared.contracts import Envelope, MessagePayload, OrderUpdated, SignalReceived
from shared.messaging import Broker, Consumer

# Receipt times of recent signals, for the webhook → filled latency (bounded: memory only).
RECEIPTS_KEPT = 10_000


class Notifier:
    def __init__(self, settings: NotifySettings, sender: TelegramSender,
                 sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sender = sender
        self.sessions = sessions
        self._receipts: OrderedDict[str, datetime] = OrderedDict()

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

    async def deliver(self, message_id: str, event_type: str, text: str) -> None:
        """To every chat that has not had it yet (a redelivery sends nothing twice)."""
        for chat_id in self.sender.chat_ids or [0]:
            async with self.sessions() as session:
                done = await session.scalar(select(Notification.id).where(
                    Notification.message_id == message_id, Notification.chat_id == chat_id))
            if done is not None:
                continue
            await self.sender.send(chat_id, text)
            try:
                async with self.sessions.begin() as session:
                    session.add(Notification(message_id=message_id, chat_id=chat_id,
                                             event_type=event_type, text=text,
                                             sent_at=datetime.now(UTC)))
            except IntegrityError:
                pass  # another replica recorded it first


def consumers(broker: Broker, notifier: Notifier) -> list[Consumer]:
    # Prefetch 1: messages reach the operator in the order they happened, even after an
    # outage of Telegram (delivery late, in order, nothing lost).
    return [
        Consumer(broker, "notify_events", notifier.handle, prefetch=1),
        Consumer(broker, "risk_alerts", notifier.handle, prefetch=1),
    ]
