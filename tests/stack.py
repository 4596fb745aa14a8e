"""The four services as their own processes, started by the supervisor the way `make run` does
(`python -m services`), against the local RabbitMQ, Redis and a database of the caller's
choosing. Used by the end-to-end, fault and security tests and by the system benchmark,
which is why it depends on no pytest fixture."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.fakes.telegram import FakeTelegram
from tests.integration.serving import free_port

ROOT = Path(__file__).parents[1]
SERVICE_NAMES = ("brain", "risk", "execute", "notify")
# A price for each default symbol, which the tick feed below keeps fresh.
SYMBOL_PRICES = {
    "BTCUSDT": 43123.5, "ETHUSDT": 2310.25, "BNBUSDT": 312.4, "ADAUSDT": 0.3812,
    "DOGEUSDT": 0.08123, "XRPUSDT": 0.6123, "SOLUSDT": 61.37, "AVAXUSDT": 21.46,
    "DOTUSDT": 5.123, "LINKUSDT": 14.52,
}


def stack_env(*, amqp_url: str, vhost: str, redis_url: str, redis_prefix: str,
              database_url: str, **extra: str) -> dict[str, str]:
    """The environment `make run` would see, pointed at the given infrastructure, with each
    service on a free port (and NOTIFY told where the other three are)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "REDIS_", "DATABASE"))}
    env |= {
        "MARKET_DATA": "none", "AMQP_URL": amqp_url, "AMQP_VHOST": vhost,
        "REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix, "DATABASE_URL": database_url,
        "LOG_FORMAT": "json",
    }
    env |= {f"{name.upper()}_PORT": str(free_port()) for name in SERVICE_NAMES}
    env |= {f"{name.upper()}_URL": f"http://127.0.0.1:{env[f'{name.upper()}_PORT']}"
            for name in ("brain", "risk", "execute")}
    return env | extra


def port_of(env: dict[str, str], service: str) -> int:
    return int(env[f"{service.upper()}_PORT"])


async def healthy(client: httpx.AsyncClient, port: int) -> bool:
    try:
        return (await client.get(f"http://127.0.0.1:{port}/health", timeout=2)).status_code == 200
    except httpx.TransportError:
        return False


async def until(probe: Any, timeout_s: float = 15, what: str = "", every_s: float = 0.1) -> Any:
    """Awaits `probe()` until it answers something true, and answers that."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (value := await probe()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        await asyncio.sleep(every_s)
    return value


async def stopped(process: asyncio.subprocess.Process, signum: int) -> None:
    """Signals `process` to stop and waits for it without blocking the loop (an imitation
    served from it may still be answering), killing it after 30 s."""
    if process.returncode is None:
        process.send_signal(signum)
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


@dataclass
class Stack:
    env: dict[str, str]
    client: httpx.AsyncClient
    log_path: Path
    supervisor: asyncio.subprocess.Process
    telegram: FakeTelegram | None = None  # the Bot API imitation NOTIFY talks to, if any
    responses: list[httpx.Response] = field(default_factory=list)
    _pids: dict[str, int] = field(default_factory=dict)
    _log_read_to: int = 0

    def url(self, service: str, path: str = "") -> str:
        return f"http://127.0.0.1:{port_of(self.env, service)}{path}"

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, self.url(service, path), **kwargs)
        self.responses.append(response)
        return response

    async def status(self, service: str, method: str, path: str, **kwargs: Any) -> int:
        """The status alone, the body unread: an event stream let through would never end."""
        async with self.client.stream(method, self.url(service, path), **kwargs) as response:
            return response.status_code

    async def tick(self, symbol: str, price: float, redis: Redis | None = None) -> None:
        """A tick as the market feed writes it, into `<prefix>market:stream`."""
        fields = {"symbol": symbol, "price": str(price),
                  "ts": str(int(datetime.now(UTC).timestamp() * 1000))}
        own = redis is None
        redis = redis or Redis.from_url(self.env["REDIS_URL"])
        try:
            await redis.xadd(self.env["REDIS_PREFIX"] + "market:stream", fields)
        finally:
            if own:
                await redis.aclose()

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines of the supervisor and the four services (they share its output)."""
        text = self.log_path.read_text(encoding="utf-8", errors="backslashreplace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def pid(self, service: str) -> int:
        """The process id the supervisor last started `service` with (the log read on from
        where the last call stopped: it grows long in a benchmark)."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_read_to)
            chunk = log.read()
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self._log_read_to += len(complete)
        for line in complete.splitlines():
            if line.startswith(b"{") and b'"service started"' in line:
                record = json.loads(line)
                self._pids[record["child"]] = record["pid"]
        return self._pids[service]

    async def is_healthy(self, service: str) -> bool:
        return await healthy(self.client, port_of(self.env, service))

    async def wait_healthy(self, *services: str, timeout_s: float = 60) -> None:
        async def all_healthy() -> bool:
            answers = await asyncio.gather(*(self.is_healthy(s) for s in services))
            return all(answers)

        await until(all_healthy, timeout_s, what=f"{', '.join(services)} healthy")

    def memory_bytes(self, service: str, field: str = "VmRSS") -> int:
        """A memory figure of the service's process from /proc: resident now (VmRSS), or the
        most it ever held (VmHWM)."""
        status = Path(f"/proc/{self.pid(service)}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines()
                   if line.startswith(f"{field}:"))
        return int(kib) * 1024

    async def stop(self) -> str:
        """Stops the supervisor (Ctrl-C) and answers the combined output."""
        await stopped(self.supervisor, signal.SIGINT)
        return self.log_path.read_text(encoding="utf-8", errors="backslashreplace")


@asynccontextmanager
async def running_stack(env: dict[str, str], log_path: Path, telegram: FakeTelegram | None = None,
                        startup_timeout_s: float = 60) -> AsyncIterator[Stack]:
    """The supervisor and the four services, healthy; stopped with Ctrl-C at the end."""
    with log_path.open("wb") as log:
        supervisor = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services", cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT)
    async with httpx.AsyncClient(timeout=10) as client:
        stack = Stack(env, client, log_path, supervisor, telegram)
        try:
            await stack.wait_healthy(*SERVICE_NAMES, timeout_s=startup_timeout_s)
            yield stack
        finally:
            await stack.stop()


async def feed_ticks(stack: Stack, stop: asyncio.Event) -> None:
    """The market feed: every symbol four times a second, through Redis restarts too."""
    redis = Redis.from_url(stack.env["REDIS_URL"])
    try:
        while not stop.is_set():
            for symbol, price in SYMBOL_PRICES.items():
                with contextlib.suppress(RedisError):  # Redis is being restarted
                    await stack.tick(symbol, price, redis)
            await asyncio.sleep(0.25)
    finally:
        await redis.aclose()
