"""Services as their own processes, configured for the test infrastructure (what `make run`
starts), each on a free port."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import AMQP_URL, REDIS_URL
from tests.integration.conftest import WEBHOOK_SECRET
from tests.stack import SERVICE_NAMES, port_of, stack_env

__all__ = ["SERVICE_NAMES", "port_of", "service_env", "wait_healthy"]


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


@pytest.fixture
def service_env(vhost: str, redis_prefix: str, tmp_path: Path) -> dict[str, str]:
    return stack_env(amqp_url=AMQP_URL, vhost=vhost, redis_url=REDIS_URL,
                     redis_prefix=redis_prefix,
                     database_url=f"sqlite+aiosqlite:///{tmp_path / 'p95.db'}",
                     WEBHOOK_SECRET=WEBHOOK_SECRET)
