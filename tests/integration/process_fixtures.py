"""Services as their own processes, configured for the test infrastructure (what `make run`
starts), each on a free port."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import AMQP_URL, REDIS_URL
from tests.integration.conftest import WEBHOOK_SECRET
from tests.integration.serving import free_port

SERVICE_NAMES = ("brain", "risk", "execute", "notify")


def wait_healthy(port: int, timeout_s: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"nothing healthy on :{port} within {timeout_s} s")


def port_of(env: dict[str, str], service: str) -> int:
    return int(env[f"{service.upper()}_PORT"])


@pytest.fixture
def service_env(vhost: str, redis_prefix: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "REDIS_", "DATABASE"))}
    env |= {
        "MARKET_DATA": "none",
        "AMQP_URL": AMQP_URL, "AMQP_VHOST": vhost, "REDIS_URL": REDIS_URL,
        "REDIS_PREFIX": redis_prefix,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'p95.db'}",
        "WEBHOOK_SECRET": WEBHOOK_SECRET, "LOG_FORMAT": "json",
    }
    env |= {f"{name.upper()}_PORT": str(free_port()) for name in SERVICE_NAMES}
    yield env
