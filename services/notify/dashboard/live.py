"""Keeping the dashboard live: a tap on the exchanges, a poller of the services' APIs, and a
hub fanning the state out to the Server-Sent Events clients.

NOTIFY only consumes: the tap is a queue of its own, so the dashboard neither slows trading
nor waits for Telegram (whose consumers block, prefetch 1, while it is down).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

from services.notify.dashboard.state import Cursor, DashboardState
from services.notify.readers import ServiceReader, ServiceUnreachableError
from services.notify.settings import NotifySettings
from shared.contracts import InvalidMessageError, parse_envelope
from shared.messaging import Broker, topology
from shared.messaging.consumer import QueueConsumer
from shared.observability.logging import get_logger

log = get_logger(__name__)

# What the dashboard hears: every signal, analysis, verdict, execution event, alert and
# command (the same as `notify_events` and `risk_alerts`, plus the control exchange).
TAP_BINDINGS: tuple[tuple[str, str], ...] = (
    (topology.TRADING_SIGNALS.name, "#"),
    (topology.ANALYSIS.name, topology.SIGNAL_PROCESS),
    (topology.ANALYSIS.name, topology.SIGNAL_HOLD),
    (topology.RISK_MANAGEMENT.name, "trade.execute"),
    (topology.RISK_MANAGEMENT.name, "trade.rejected"),
    (topology.RISK_MANAGEMENT.name, "risk.alert"),
    (topology.TRADING_EXECUTION.name, "#"),
    (topology.CONTROL.name, "#"),
)
TAP_PREFETCH = 100
POLL_INTERVAL_S = 2.0
POLL_TIMEOUT_S = 1.5
# At most four updates a second, whatever the rate of ticks.
UPDATE_INTERVAL_S = 0.25
HEARTBEAT_S = 15.0
# Updates a client may have pending; one that falls this far behind is dropped (its
# browser reconnects and starts again from a snapshot).
CLIENT_QUEUE_SIZE = 32

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class StreamHub:
    """The SSE clients: each gets a full snapshot when it subscribes, then updates at most
    every UPDATE_INTERVAL_S while something changes. A client's queue is bounded; nothing
    ever waits for a client."""

    def __init__(self, state: DashboardState, clock: Clock = _now, *,
                 update_interval_s: float = UPDATE_INTERVAL_S,
                 client_queue_size: int = CLIENT_QUEUE_SIZE) -> None:
        self.state = state
        self.clock = clock
        self.update_interval_s = update_interval_s
        self.client_queue_size = client_queue_size
        self.clients: set[asyncio.Queue[str | None]] = set()
        self._changed = asyncio.Event()
        self._cursor = Cursor()
        self._closed = False

    def changed(self) -> None:
        self._changed.set()

    def subscribe(self) -> asyncio.Queue[str | None]:
        """A client's queue of SSE frames, the snapshot first; None ends the stream."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(self.client_queue_size)
        if self._closed:
            queue.put_nowait(None)
            return queue
        snapshot, _ = self.state.view(self.clock())
        queue.put_nowait(sse("snapshot", snapshot))
        self.clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str | None]) -> None:
        self.clients.discard(queue)

    async def run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            self.broadcast()
            await asyncio.sleep(self.update_interval_s)

    def broadcast(self) -> None:
        update, self._cursor = self.state.view(self.clock(), self._cursor)
        frame = sse("update", update)
        for queue in list(self.clients):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:
                log.warning("dashboard client too slow: dropped")
                self._end(queue)

    def close(self) -> None:
        """Ends every stream now (shutdown), and any opened later."""
        self._closed = True
        for queue in list(self.clients):
            self._end(queue)

    def _end(self, queue: asyncio.Queue[str | None]) -> None:
        self.clients.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)


class EventTap(QueueConsumer):
    """An exclusive, auto-delete queue bound to every exchange the dashboard shows, on a
    channel of its own. aio-pika names it on the client side, so its robust channel can
    declare it again, with its bindings and consumer, after a reconnection."""

    def __init__(self, broker: Broker, state: DashboardState, hub: StreamHub) -> None:
        super().__init__(broker, TAP_PREFETCH)
        self.state = state
        self.hub = hub

    async def declare(self, channel: AbstractRobustChannel) -> AbstractQueue:
        queue = await channel.declare_queue(
            exclusive=True, auto_delete=True, durable=False,
            arguments={"x-queue-type": "classic"})  # whatever the vhost's default type
        for exchange, routing_key in TAP_BINDINGS:
            await queue.bind(exchange, routing_key)
        return queue

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = parse_envelope(message.body)
            payload = envelope.open()
        except InvalidMessageError as exc:
            # The work queues dead-letter it; the dashboard just does not show it.
            log.warning("dashboard: message not understood", error=str(exc))
        else:
            try:
                if self.state.apply_event(envelope, payload):
                    self.hub.changed()
            except Exception:  # a bug in the folding must not stall the tap
                log.exception("dashboard: event not folded", type=envelope.type)
        await message.ack()


class ServicePoller:
    """Every POLL_INTERVAL_S: each service's health, RISK's status and EXECUTE's open
    positions with their marks. A restarted NOTIFY converges from these, whatever events it
    missed."""

    def __init__(self, settings: NotifySettings, reader: ServiceReader, state: DashboardState,
                 hub: StreamHub, own_health: Callable[[], Awaitable[dict[str, str]]],
                 clock: Clock = _now, interval_s: float = POLL_INTERVAL_S) -> None:
        self.settings = settings
        self.reader = reader
        self.state = state
        self.hub = hub
        self.own_health = own_health
        self.clock = clock
        self.interval_s = interval_s

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # an answer not as expected: the next poll tries again
                log.exception("dashboard poll failed")
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> None:
        urls = {"brain": self.settings.brain_url, "risk": self.settings.risk_url,
                "execute": self.settings.execute_url}
        healths, notify_checks, risk_status, positions = await asyncio.gather(
            asyncio.gather(*(self._health(url) for url in urls.values())),
            self._own_health(),
            self._get_json(self.settings.risk_url, "/status", "RISK"),
            self._get_json(self.settings.execute_url, "/positions", "EXECUTE",
                           {"status": "open"}),
        )
        at = self.clock()
        for service, (status, checks) in zip(urls, healths, strict=True):
            self.state.apply_health(service, status, checks, at)
        healthy = all(state == "ok" for state in notify_checks.values())
        self.state.apply_health("notify", "ok" if healthy else "unavailable", notify_checks,
                                at)
        if isinstance(risk_status, dict):
            self.state.apply_risk_status(risk_status, at)
        if isinstance(positions, list):
            self.state.apply_positions(positions)
        self.hub.changed()

    async def _own_health(self) -> dict[str, str]:
        try:
            return await self.own_health()
        except Exception as exc:
            return {"self": f"down: {type(exc).__name__}"}

    async def _health(self, base_url: str) -> tuple[str, dict[str, Any]]:
        try:
            response = await self.reader.client.get(f"{base_url}/health",
                                                    timeout=POLL_TIMEOUT_S)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return "unreachable", {"error": type(exc).__name__}
        if not isinstance(body, dict):
            return "unreachable", {"error": f"HTTP {response.status_code}"}
        return str(body.get("status", "unknown")), body.get("checks") or {}

    async def _get_json(self, base_url: str, path: str, service: str,
                        params: dict[str, Any] | None = None) -> Any:
        try:
            return await self.reader.get(base_url, path, service, params, POLL_TIMEOUT_S)
        except ServiceUnreachableError:
            return None  # shown by the service's health; the next poll tries again


class Dashboard:
    """The state and what keeps it live, started and stopped with NOTIFY."""

    def __init__(self, settings: NotifySettings, reader: ServiceReader,
                 clock: Clock = _now) -> None:
        self.settings = settings
        self.reader = reader
        self.state = DashboardState(clock())
        self.hub = StreamHub(self.state, clock)
        self.clock = clock
        self._tap: EventTap | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, own_health: Callable[[], Awaitable[dict[str, str]]]) -> None:
        """The hub and the poller; the tap waits for the broker (`start_tap`)."""
        poller = ServicePoller(self.settings, self.reader, self.state, self.hub, own_health,
                               self.clock)
        self._tasks = [asyncio.create_task(self.hub.run(), name="dashboard-hub"),
                       asyncio.create_task(poller.run(), name="dashboard-poller")]

    async def start_tap(self, broker: Broker) -> None:
        tap = EventTap(broker, self.state, self.hub)
        await tap.start()
        self._tap = tap

    async def stop(self) -> None:
        self.hub.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tap is not None:
            await self._tap.stop()
