"""Reading a Redis stream through a consumer group (messaging.md, "Redis streams"): blocking
XREADGROUP, every entry acked whatever its handling did (streams carry data that is fine to
lose, never commands), and the group re-created if the stream vanished (Redis restart)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from shared.observability.logging import get_logger

log = get_logger(__name__)

Fields = dict[str, str]


class StreamReader:
    def __init__(self, redis: Redis, stream: str, group: str, *, batch: int = 1000,
                 block_ms: int = 1000) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.block_ms = block_ms

    async def ensure_group(self) -> None:
        """The group reads what is written from now on (`$`): old prices are no news."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, handle: Callable[[Fields], Awaitable[None]],
                  before_read: Callable[[], Awaitable[None]] | None = None) -> None:
        """Forever: read a batch, hand each entry to `handle`, ack the batch. A failing round
        is logged and retried; it never ends the loop."""
        await self.ensure_group()
        while True:
            try:
                if before_read is not None:
                    await before_read()
                batches = await self.redis.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"}, count=self.batch,
                    block=self.block_ms)
                for _stream, entries in batches or []:
                    try:
                        for _entry_id, fields in entries:
                            await handle(fields)
                    finally:
                        await self.redis.xack(self.stream, self.group,
                                              *[entry_id for entry_id, _ in entries])
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.ensure_group()
            except (RedisError, OSError) as exc:
                log.warning("stream unreadable, retrying", stream=self.stream, error=str(exc))
                await asyncio.sleep(1)
            except Exception as exc:  # e.g. an alert not yet sent: it waits in the outbox
                log.warning("stream round failed", stream=self.stream,
                            error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)
