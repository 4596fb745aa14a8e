"""One robust connection per service: confirmed publishing and the topology declared on connect."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from urllib.parse import quote

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection, AbstractRobustExchange
from aio_pika.exceptions import AMQPError
from yarl import URL

from shared.config import Settings
from shared.contracts import Envelope
from shared.messaging import topology
from shared.observability.logging import get_logger
from shared.observability.metrics import PUBLISHED

log = get_logger(__name__)


class BrokerUnavailableError(RuntimeError):
    """A publish was not confirmed: the broker is down, refused it, or could not route it."""


def amqp_url(settings: Settings) -> URL:
    """`AMQP_URL` with its path replaced by `AMQP_VHOST` (percent-encoded, as AMQP wants it)."""
    base = URL(settings.amqp_url.get_secret_value())
    vhost_path = "/" + quote(settings.amqp_vhost, safe="")
    return base.with_path(vhost_path, encoded=True).with_query(base.query)


async def declare_topology(channel: aio_pika.abc.AbstractChannel) -> None:
    """Declare every exchange, queue and binding; idempotent, and the same as definitions.json."""
    exchanges = {}
    for exchange in topology.EXCHANGES:
        exchanges[exchange.name] = await channel.declare_exchange(
            exchange.name, exchange.type, durable=True
        )
    for queue in topology.QUEUES:
        declared = await channel.declare_queue(
            queue.name, durable=True, arguments=queue.arguments
        )
        for exchange_name, routing_key in queue.bindings:
            await declared.bind(exchanges[exchange_name], routing_key)


class Broker:
    """The service's connection to RabbitMQ.

    Reconnects by itself (aio-pika's robust connection); while it is down, `connected` is false
    and publishing raises `BrokerUnavailableError` at once instead of waiting.

    A channel sends one publish at a time (aiormq holds its lock until the frame is written), so
    a service publishing for many concurrent requests can spread them over `publish_channels`
    channels, taken in turn. Each publish still waits for its own confirm. On one channel (the
    default) publishes go out in the order they were issued, which shared/outbox.py relies on;
    on several, two are only ordered if the second starts after the first returned.
    """

    def __init__(self, settings: Settings, producer: str, publish_channels: int = 1) -> None:
        self.settings = settings
        self.producer = producer
        self.publish_channels = publish_channels
        self.connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchanges: list[dict[str, AbstractRobustExchange]] = []  # per publishing channel
        self._turns = itertools.count()
        self._connecting: asyncio.Task[None] | None = None
        self._ready = False

    def start(self) -> None:
        """Connect in the background, retrying until the broker answers; a service can start
        (and report 503 on /health) while RabbitMQ is still down."""
        self._connecting = asyncio.create_task(self._connect_until_up(), name="amqp-connect")

    async def wait_connected(self) -> None:
        if self._connecting is not None:
            await asyncio.shield(self._connecting)

    async def _connect_until_up(self) -> None:
        delay = self.settings.amqp_reconnect_interval_s
        while True:
            try:
                await self.connect()
                log.info("connected to RabbitMQ", vhost=self.settings.amqp_vhost)
                return
            except (AMQPError, OSError) as exc:
                await self.close()
                log.warning("RabbitMQ unreachable, retrying", retry_in_s=delay,
                            error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def connect(self) -> None:
        self.connection = await aio_pika.connect_robust(
            amqp_url(self.settings),
            reconnect_interval=self.settings.amqp_reconnect_interval_s,
            client_properties={"connection_name": self.producer},
        )
        channels = [
            await self.connection.channel(publisher_confirms=True, on_return_raises=True)
            for _ in range(self.publish_channels)
        ]
        self._channel = channels[0]
        await declare_topology(self._channel)
        # Passive lookups: the robust channels re-declare them after a reconnect.
        self._exchanges = [
            {exchange.name: await channel.get_exchange(exchange.name)
             for exchange in topology.EXCHANGES}
            for channel in channels
        ]
        self._ready = True  # only now can anything be published

    async def channel(self, prefetch: int) -> AbstractRobustChannel:
        """A new channel with bounded prefetch, for one consumer."""
        if self.connection is None:
            raise BrokerUnavailableError("not connected")
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        return channel

    @property
    def connected(self) -> bool:
        return (
            self._ready
            and self.connection is not None
            and self.connection.connected.is_set()
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def publish(self, envelope: Envelope, exchange: str, routing_key: str) -> None:
        """Persistent, mandatory, and done only once the broker confirmed it."""
        message = aio_pika.Message(
            body=envelope.to_json(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id,
            type=envelope.type,
            timestamp=envelope.produced_at,
            app_id=envelope.producer,
        )
        await self.publish_message(message, exchange, routing_key)

    async def publish_message(
        self, message: aio_pika.abc.AbstractMessage, exchange: str, routing_key: str
    ) -> None:
        """Confirmed publish of a built message (dead-lettering re-publishes the original)."""
        if not self.connected:
            PUBLISHED.labels(exchange, "unavailable").inc()
            raise BrokerUnavailableError("RabbitMQ is not connected")
        try:
            async with asyncio.timeout(self.settings.amqp_publish_timeout_s):
                exchanges = self._exchanges[next(self._turns) % len(self._exchanges)]
                await exchanges[exchange].publish(message, routing_key, mandatory=True)
        except (AMQPError, ConnectionError, TimeoutError, RuntimeError) as exc:
            PUBLISHED.labels(exchange, "failed").inc()
            raise BrokerUnavailableError(
                f"publish to {exchange}/{routing_key} not confirmed: {type(exc).__name__} {exc}"
            ) from exc
        PUBLISHED.labels(exchange, "confirmed").inc()

    async def close(self) -> None:
        if self._connecting is not None and asyncio.current_task() is not self._connecting:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self.connection is not None:
            await self.connection.close()
        self.connection, self._channel, self._exchanges = None, None, []
        self._ready = False
