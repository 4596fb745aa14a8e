"""Dead letters reach the operator: NOTIFY consumes its copy of each (`notify_dead_letters`,
bound to the dead-letter exchange) and sends who, what and why to Telegram.

A `QueueConsumer`, not a `Consumer`: a dead letter may be exactly the message no envelope
parser accepts, so only its AMQP properties and headers are read, never its body's schema."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

from services.notify.messages import dead_letter
from shared.messaging import Broker, topology
from shared.messaging.consumer import (
    ATTEMPTS_HEADER,
    REASON_HEADER,
    TRANSIENT_ERRORS,
    QueueConsumer,
    backoff_delay,
    declare_queue,
)
from shared.observability.logging import get_logger

log = get_logger(__name__)

Deliver = Callable[[str, str, str], Awaitable[None]]  # (message id, event type, text)


def dead_letter_notice(queue: str, headers: Mapping[str, Any], *, message_type: str | None,
                       message_id: str | None, body: bytes) -> tuple[str, str]:
    """(A deterministic id, the text) of one dead letter: the same dead letter redelivered is
    the same notice; the same message dead-lettered again later is a new one."""
    reason = headers.get(REASON_HEADER)
    if reason is None:  # dead-lettered by the broker itself (delivery limit, rejection)
        reason = f"broker: {headers.get('x-first-death-reason', 'unknown')}"
    attempts = headers.get(ATTEMPTS_HEADER) or headers.get("x-delivery-count")
    count = int(attempts) if isinstance(attempts, int | str) and str(attempts).isdigit() else None
    identity = message_id or hashlib.sha256(body).hexdigest()[:24]
    text = dead_letter(queue, str(reason), message_type=message_type, message_id=message_id,
                       count=count)
    return f"dead-letter:{queue}:{identity}:{count or 0}", text


class DeadLetterWatcher(QueueConsumer):
    def __init__(self, broker: Broker, deliver: Deliver, *, backoff_base_s: float = 0.5,
                 backoff_cap_s: float = 5.0) -> None:
        super().__init__(broker, prefetch=1)
        self.deliver = deliver
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s

    async def declare(self, channel: AbstractRobustChannel) -> AbstractQueue:
        return await declare_queue(channel, topology.NOTIFY_DEAD_LETTERS.name)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        notice_id, text = dead_letter_notice(
            message.routing_key or "?", message.headers or {}, message_type=message.type,
            message_id=message.message_id, body=message.body)
        retry = 0
        # Telegram or the database away: wait (in order) rather than lose the notice.
        while True:
            try:
                await self.deliver(notice_id, "dead_letter", text)
                break
            except TRANSIENT_ERRORS as exc:
                retry += 1
                delay = backoff_delay(retry, self.backoff_base_s, self.backoff_cap_s)
                log.warning("dead-letter notice not delivered yet", retry_in_s=delay,
                            reason=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
        await message.ack()
