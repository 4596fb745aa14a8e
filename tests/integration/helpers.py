"""Reading what reached the broker, through a plain aio-pika consumer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika


async def drain(
    connection: aio_pika.abc.AbstractConnection, queue_name: str, *, settle_s: float = 0.5,
    expect: int | None = None, timeout_s: float = 10.0,
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message in the queue: waits until `expect` arrived (then a short settle, to catch
    extras) or, without `expect`, until `settle_s` pass with nothing new."""
    channel = await connection.channel()
    queue = await channel.get_queue(queue_name)
    messages: list[aio_pika.abc.AbstractIncomingMessage] = []
    arrived = asyncio.Event()

    async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        messages.append(message)
        arrived.set()

    tag = await queue.consume(collect, no_ack=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        enough = expect is not None and len(messages) >= expect
        quiet = settle_s if expect is None else (0.2 if enough else deadline - loop.time())
        arrived.clear()
        try:
            await asyncio.wait_for(arrived.wait(), timeout=max(quiet, 0.01))
        except TimeoutError:
            if expect is None or enough:
                break
    await queue.cancel(tag)
    await channel.close()
    return messages


def body(message: aio_pika.abc.AbstractIncomingMessage) -> dict[str, Any]:
    return json.loads(message.body)
