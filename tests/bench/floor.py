"""The broker's floor under our pipeline: four sequential hops through the same RabbitMQ with no
logic at all, so the system benchmark can tell what the broker costs from what our code costs.

    .venv/bin/python -m tests.bench.floor --rate 20 --count 200 --vhost /

Each hop does what a pipeline hop does on the wire: a persistent message on a durable quorum
queue, published with a publisher confirm, and the incoming message acked by hand only once the
next publish is confirmed. The producer stands for the webhook, consumers 1-3 for BRAIN, RISK and
EXECUTE, consumer 4 for the "filled" end. As our services are separate processes, each stage has
a connection of its own, one channel to consume from (bounded prefetch) and one to publish on.
Messages go through the default exchange straight to the queue (our exchanges route in-process
in the broker, which costs little next to the quorum queue's fsync). Latency is measured in this
one process with time.perf_counter: from just before the producer's publish to just after
consumer 4's ack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import time
import urllib.parse
import uuid
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

HOPS = 4
PREFETCH = 50
PAYLOAD_BYTES = 600
QUEUE_ARGUMENTS = {"x-queue-type": "quorum"}


def _body(seq: int) -> bytes:
    """An envelope-shaped JSON body of about PAYLOAD_BYTES, so frames weigh what ours do."""
    envelope = {
        "message_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
        "type": "bench.floor",
        "producer": "bench-floor",
        "produced_at": datetime.now(UTC).isoformat(),
        "schema_version": 1,
        "payload": {"seq": seq, "symbol": "BTCUSDT", "action": "buy", "price": "65000.5"},
    }
    padding = PAYLOAD_BYTES - len(json.dumps(envelope, separators=(",", ":")))
    envelope["payload"]["padding"] = "x" * max(0, padding - len(',"padding":""'))
    return json.dumps(envelope, separators=(",", ":")).encode()


def _message(body: bytes, seq: int) -> aio_pika.Message:
    return aio_pika.Message(
        body=body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(seq),
    )


async def measure_floor(
    amqp_url: str, vhost: str, rate_per_s: float, count: int, *, warmup: int = 20
) -> list[float]:
    """Per-message latencies in seconds of `count` messages sent at `rate_per_s`, after `warmup`
    messages (same rate, not returned) that open the channels and warm the queues up."""
    if rate_per_s <= 0 or count <= 0 or warmup < 0:
        raise ValueError("rate_per_s and count must be positive, warmup not negative")
    url = f"{amqp_url.rstrip('/')}/{urllib.parse.quote(vhost, safe='')}"
    names = [f"bench-floor-{uuid.uuid4().hex[:12]}-hop{n}" for n in range(1, HOPS + 1)]
    total = warmup + count
    loop = asyncio.get_running_loop()
    done: list[asyncio.Future[float]] = [loop.create_future() for _ in range(total)]
    started = [math.nan] * total
    connections: list[AbstractRobustConnection] = []
    try:
        for _ in range(HOPS + 1):  # the producer, then one per consumer stage
            connections.append(await aio_pika.connect_robust(
                url, client_properties={"connection_name": "bench-floor"}
            ))
        for stage, connection in enumerate(connections[1:]):
            await _start_stage(connection, names, stage, done)

        publisher = await connections[0].channel()  # publisher_confirms=True by default
        bodies = [_body(seq) for seq in range(total)]
        publishes: list[asyncio.Task[None]] = []
        t0 = loop.time()
        for seq in range(total):
            delay = t0 + seq / rate_per_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            publishes.append(asyncio.create_task(
                _publish_first(publisher, names[0], bodies[seq], seq, started)
            ))
        deadline = total / rate_per_s + 30.0
        try:
            async with asyncio.timeout(deadline):
                await asyncio.gather(*publishes)
                ended = await asyncio.gather(*done)
        except TimeoutError as exc:
            arrived = sum(future.done() for future in done)
            raise TimeoutError(f"{arrived}/{total} messages crossed the 4 hops") from exc
        return [end - start for start, end in zip(started[warmup:], ended[warmup:], strict=True)]
    finally:
        await _cleanup(connections, names)


async def _publish_first(
    channel: AbstractRobustChannel, queue: str, body: bytes, seq: int, started: list[float]
) -> None:
    """The webhook's publish: one task per message, so a slow confirm does not shift the
    schedule of the next one."""
    started[seq] = time.perf_counter()
    await channel.default_exchange.publish(_message(body, seq), routing_key=queue)


async def _start_stage(
    connection: AbstractRobustConnection,
    names: list[str],
    stage: int,
    done: list[asyncio.Future[float]],
) -> None:
    """Declare and consume hop `stage + 1`; forward to the next hop (confirmed) then ack, or at
    the last hop ack and record the end time."""
    consume = await connection.channel()
    await consume.set_qos(prefetch_count=PREFETCH)
    queue = await consume.declare_queue(names[stage], durable=True, arguments=QUEUE_ARGUMENTS)
    last = stage == HOPS - 1
    publish = None if last else await connection.channel()

    async def on_message(message: AbstractIncomingMessage) -> None:
        seq = int(str(message.message_id))
        if publish is not None:
            await publish.default_exchange.publish(
                _message(message.body, seq), routing_key=names[stage + 1]
            )
        await message.ack()
        if last and not done[seq].done():
            done[seq].set_result(time.perf_counter())

    await queue.consume(on_message)


async def _cleanup(connections: list[AbstractRobustConnection], names: list[str]) -> None:
    """Close the consumers' connections first (a queue deleted under a consumer cancels it,
    noisily), then delete the queues on a fresh channel of the producer's connection; best
    effort, so the original error, if any, is the one raised."""
    for connection in connections[1:]:
        with contextlib.suppress(Exception):
            await connection.close()
    if connections:
        with contextlib.suppress(Exception):
            channel = await connections[0].channel()
            for name in names:
                with contextlib.suppress(Exception):
                    await channel.queue_delete(name)
        with contextlib.suppress(Exception):
            await connections[0].close()


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the value below which q % of the samples lie."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="amqp://guest:guest@localhost:5672/")
    parser.add_argument("--vhost", default="/")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--count", type=int, default=200, help="measured messages")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured messages first")
    args = parser.parse_args()
    latencies = asyncio.run(
        measure_floor(args.url, args.vhost, args.rate, args.count, warmup=args.warmup)
    )
    print(
        f"floor {args.rate:g}/s x{len(latencies)}: "
        f"p50 {percentile(latencies, 50) * 1000:.2f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.2f} ms, "
        f"max {max(latencies) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
