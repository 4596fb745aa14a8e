"""Consuming with the guarantees of messaging.md.

A message is acked only after its handler returned (its effects committed). A transient
failure (a dependency unreachable) is retried in place with exponential backoff; any other
failure is redelivered with backoff and, on its last allowed delivery, dead-lettered with the
reason in a header. A message no retry can fix (bad JSON, bad schema, unknown type or version)
goes to the DLQ at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from aio_pika.exceptions import AMQPError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from shared.contracts import Envelope, InvalidMessageError, MessagePayload, parse_envelope
from shared.messaging import topology
from shared.messaging.broker import Broker, BrokerUnavailableError
from shared.observability.logging import bind_correlation_id, get_logger
from shared.observability.metrics import DEAD_LETTERS, MESSAGES

log = get_logger(__name__)

# Called with the envelope and its payload, already validated as the type's model.
Handler = Callable[[Envelope, MessagePayload], Awaitable[None]]

REASON_HEADER = "x-phoenix95-reason"
ATTEMPTS_HEADER = "x-phoenix95-attempts"


class TransientError(RuntimeError):
    """Raised by a handler for a failure that waiting will cure (e.g. an exchange timeout)."""


# Failures of our own infrastructure: retried in place while it is away. An outage longer
# than `transient_give_up_s` counts as a failed delivery, so one of about two hours (five
# deliveries) ends in the DLQ, with the reason, rather than holding the queue for ever.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    BrokerUnavailableError,
    AMQPError,
    ConnectionError,
    TimeoutError,
    RedisConnectionError,
    RedisTimeoutError,
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential: base, 2·base, 4·base … capped."""
    return min(base * 2 ** (attempt - 1), cap)


class QueueConsumer:
    """One queue consumed on a channel of its own: `start` declares it (`declare`) and consumes
    it (`on_message`); `stop` closes the channel, so what was not acked is delivered again."""

    def __init__(self, broker: Broker, prefetch: int) -> None:
        self.broker = broker
        self.prefetch = prefetch
        self._channel: AbstractRobustChannel | None = None

    async def start(self) -> None:
        self._channel = await self.broker.channel(self.prefetch)
        queue = await self.declare(self._channel)
        await queue.consume(self.on_message)

    async def stop(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None

    async def declare(self, channel: AbstractRobustChannel) -> AbstractQueue:
        raise NotImplementedError

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        raise NotImplementedError


async def declare_queue(channel: AbstractRobustChannel, name: str) -> AbstractQueue:
    """A queue of the topology, as it defines it."""
    queue = next(q for q in topology.QUEUES if q.name == name)
    return await channel.declare_queue(queue.name, durable=True, arguments=queue.arguments)


class Consumer(QueueConsumer):
    def __init__(
        self,
        broker: Broker,
        queue_name: str,
        handler: Handler,
        *,
        prefetch: int,
        max_deliveries: int = topology.DELIVERY_LIMIT,
        backoff_base_s: float = 0.5,
        # Low, so that work resumes within seconds of a dependency coming back (issue 6).
        backoff_cap_s: float = 5.0,
        transient_give_up_s: float = 25 * 60.0,
    ) -> None:
        super().__init__(broker, prefetch)
        self.queue_name = queue_name
        self.handler = handler
        self.max_deliveries = max_deliveries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        # Below RabbitMQ's 30-minute consumer timeout, which would close the channel.
        self.transient_give_up_s = transient_give_up_s

    async def declare(self, channel: AbstractRobustChannel) -> AbstractQueue:
        return await declare_queue(channel, self.queue_name)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        # Quorum queues count earlier deliveries in x-delivery-count (absent on the first).
        attempt = int((message.headers or {}).get("x-delivery-count", 0) or 0) + 1
        with bind_correlation_id(
            correlation_id=message.correlation_id, message_id=message.message_id,
            queue=self.queue_name,
        ):
            try:
                envelope = parse_envelope(message.body)
                await self._handle_with_transient_retries(envelope, envelope.open())
            except InvalidMessageError as exc:
                await self._dead_letter(message, f"invalid: {exc}", attempt)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if attempt >= self.max_deliveries:
                    await self._dead_letter(message, reason, attempt)
                else:
                    delay = backoff_delay(attempt, self.backoff_base_s, self.backoff_cap_s)
                    log.warning("handler failed, redelivering", attempt=attempt,
                                retry_in_s=delay, reason=reason)
                    MESSAGES.labels(self.queue_name, "retried").inc()
                    await asyncio.sleep(delay)
                    await message.nack(requeue=True)
            else:
                await message.ack()
                MESSAGES.labels(self.queue_name, "acked").inc()

    async def _handle_with_transient_retries(
        self, envelope: Envelope, payload: MessagePayload
    ) -> None:
        started = time.monotonic()
        retry = 0
        while True:
            try:
                await self.handler(envelope, payload)
                return
            except TRANSIENT_ERRORS as exc:
                retry += 1
                if time.monotonic() - started > self.transient_give_up_s:
                    raise
                delay = backoff_delay(retry, self.backoff_base_s, self.backoff_cap_s)
                log.warning("dependency unavailable, retrying", retry=retry, retry_in_s=delay,
                            reason=f"{type(exc).__name__}: {exc}")
                MESSAGES.labels(self.queue_name, "retried").inc()
                await asyncio.sleep(delay)

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, attempt: int
    ) -> None:
        """Publish to the DLQ with the reason (confirmed), then ack the original."""
        headers = dict(message.headers or {})
        headers |= {REASON_HEADER: reason[:1000], ATTEMPTS_HEADER: attempt}
        copy = aio_pika.Message(
            body=message.body,
            headers=headers,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            type=message.type,
            timestamp=message.timestamp,
            app_id=message.app_id,
        )
        try:
            await self.broker.publish_message(copy, topology.DEAD_LETTER_EXCHANGE, self.queue_name)
        except BrokerUnavailableError:
            # Not dead-lettered, so not acked: it comes back and is judged again.
            await message.nack(requeue=True)
            return
        await message.ack()
        log.error("message dead-lettered", reason=reason, attempt=attempt)
        MESSAGES.labels(self.queue_name, "dead_lettered").inc()
        DEAD_LETTERS.labels(self.queue_name).inc()
