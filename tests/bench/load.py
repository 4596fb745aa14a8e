"""A light HTTP/1.1 load generator over raw asyncio streams, for the system benchmark: httpx
spends too much per request to push 1 000+ req/s from 2 cores, and aiohttp is not installed.

Requests are pre-serialised (`POST <path>` with a JSON body) and sent on keep-alive
connections. Responses are framed by Content-Length or chunked encoding (or, without either, by
the server closing the connection). A failure (refused or dropped connection, malformed
response, timeout) never ends a run: it gives a Result with status 0 and its reason as body,
and that connection is reopened for the next request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import cast

TIMEOUT_S = 10.0
NO_BODY_STATUSES = frozenset({204, 304})
FAILURES = (OSError, EOFError, asyncio.LimitOverrunError, TimeoutError, ValueError)


@dataclass
class Result:
    status: int  # 0: no HTTP response (connection error, closed connection, timeout)
    seconds: float
    body: bytes
    sent_at: float  # time.time() when the request was due, to compare with DB timestamps


def serialise(host: str, port: int, path: str, body: bytes) -> bytes:
    """The whole request as bytes, built before the run so sending costs one write."""
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


class Connection:
    """One keep-alive connection, opened on first use and reopened after any failure."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> Result:
        """One request-response; times from the call, so a (re)connect counts as latency."""
        sent_at = time.time()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                status, body = await self._exchange(request)
        except FAILURES as exc:
            await self.close()
            reason = str(exc) or f"no response within {self.timeout_s:g} s"
            status, body = 0, f"{type(exc).__name__}: {reason}".encode()
        return Result(status, time.perf_counter() - started, body, sent_at)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._reader is None or self._reader.at_eof():
            # The server closed an idle keep-alive connection: reopen rather than fail on it.
            await self.close()
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert writer is not None
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].split(b"\r\n")
        version, code, *_ = status_line.split(b" ", 2)
        if not version.startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(code)
        headers: dict[bytes, bytes] = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        keep_alive = headers.get(b"connection", b"").lower() != b"close"
        if status in NO_BODY_STATUSES or 100 <= status < 200:
            body = b""
        elif b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            body = await _read_chunked(reader)
        elif b"content-length" in headers:
            body = await reader.readexactly(int(headers[b"content-length"]))
        else:
            body = await reader.read()  # delimited by the server closing the connection
            keep_alive = False
        if not keep_alive:
            await self.close()
        return status, body

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # the peer's reset is of no interest once we drop the connection


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """Chunked transfer coding; extensions and trailers are read and ignored."""
    chunks = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(chunks)
        chunks.append((await reader.readexactly(size + 2))[:-2])


async def run_paced(
    host: str,
    port: int,
    bodies: list[bytes],
    rate_per_s: float,
    path: str = "/webhook",
    max_connections: int = 64,
    timeout_s: float = TIMEOUT_S,
) -> list[Result]:
    """Open loop: body i is due at t0 + i/rate whatever the earlier responses did, and goes on a
    free pooled connection, a new one while fewer than max_connections are open. Results are in
    the order of bodies; their time runs from when the request was due, so waiting for a
    connection when all are busy shows as latency rather than as a lower rate."""
    if rate_per_s <= 0 or max_connections <= 0:
        raise ValueError("rate_per_s and max_connections must be positive")
    requests = [serialise(host, port, path, body) for body in bodies]
    idle: asyncio.LifoQueue[Connection] = asyncio.LifoQueue()  # the warmest first
    opened: list[Connection] = []
    results: list[Result | None] = [None] * len(requests)

    async def send(index: int) -> None:
        sent_at = time.time()
        started = time.perf_counter()
        if not idle.empty() or len(opened) >= max_connections:
            connection = await idle.get()
        else:
            connection = Connection(host, port, timeout_s)
            opened.append(connection)
        try:
            result = await connection.send(requests[index])
        finally:
            idle.put_nowait(connection)
        results[index] = replace(result, seconds=time.perf_counter() - started, sent_at=sent_at)

    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    try:
        t0 = loop.time()
        for index in range(len(requests)):
            delay = t0 + index / rate_per_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(index)))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(connection.close() for connection in opened))
    return cast(list[Result], results)  # every index was filled


async def run_concurrent(
    host: str,
    port: int,
    bodies: list[bytes],
    concurrency: int,
    path: str = "/webhook",
    timeout_s: float = TIMEOUT_S,
) -> list[Result]:
    """Closed loop (a burst): `concurrency` workers, each with one keep-alive connection, take
    the next body as soon as their previous response is in. Results are in the order of bodies."""
    if concurrency <= 0:
        raise ValueError("concurrency must be positive")
    requests = [serialise(host, port, path, body) for body in bodies]
    results: list[Result | None] = [None] * len(requests)
    next_index = 0

    async def worker(connection: Connection) -> None:
        nonlocal next_index
        while next_index < len(requests):
            index, next_index = next_index, next_index + 1
            results[index] = await connection.send(requests[index])

    connections = [Connection(host, port, timeout_s) for _ in range(concurrency)]
    try:
        await asyncio.gather(*(worker(connection) for connection in connections))
    finally:
        await asyncio.gather(*(connection.close() for connection in connections))
    return cast(list[Result], results)  # every index was filled

