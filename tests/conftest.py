"""Real infrastructure for the tests: RabbitMQ, Redis and PostgreSQL on localhost.

Each test session gets its own RabbitMQ vhost; each test its own Redis prefix and database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import pytest
from redis.asyncio import Redis

from shared.messaging import topology

# NOTIFY's fixtures (a Telegram imitation, NOTIFY in-process), shared by its test modules.
pytest_plugins = [
    "tests.integration.notify_fixtures", "tests.integration.process_fixtures",
    "tests.integration.trading_fixtures",
]

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@localhost:5672/")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://localhost:6379/0")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@localhost:5432")


def rabbitmqctl(*args: str) -> str:
    binary = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    return subprocess.run(
        [binary, *args], check=True, capture_output=True, text=True, timeout=120
    ).stdout


# Throwaway infrastructure, for the fixtures below and the benchmarks.


def add_vhost(name: str) -> None:
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")


def delete_vhost(name: str) -> None:
    """Once the broker is up (a test may have just restarted it); quietly if it cannot."""
    try:
        rabbitmqctl("await_startup")
        rabbitmqctl("delete_vhost", name)
    except subprocess.CalledProcessError:
        pass


async def drop_redis_prefix(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def postgres_admin(sql: str) -> None:
    """A statement on PostgreSQL's `postgres` database (CREATE / DROP DATABASE)."""
    import asyncpg

    connection = await asyncpg.connect(
        POSTGRES_URL.replace("postgresql+asyncpg", "postgresql") + "/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def vhost() -> Iterator[str]:
    name = f"/p95test-{uuid.uuid4().hex[:8]}"
    add_vhost(name)
    yield name
    delete_vhost(name)


@pytest.fixture
async def amqp(vhost: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    """A test-side connection to the test vhost, with every queue emptied first."""
    from urllib.parse import quote

    connection = await aio_pika.connect_robust(f"{AMQP_URL.rstrip('/')}/{quote(vhost, safe='')}")
    channel = await connection.channel()
    from shared.messaging.broker import declare_topology

    await declare_topology(channel)
    for queue in topology.QUEUES:
        declared = await channel.get_queue(queue.name)
        await declared.purge()
    await channel.close()
    yield connection
    await connection.close()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"p95test:{uuid.uuid4().hex[:8]}:"
    yield prefix
    await drop_redis_prefix(prefix)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    from shared.db.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'phoenix95.db'}"
    upgrade(url)
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated, dropped afterwards."""
    from shared.db.migrate import upgrade

    name = f"p95test_{uuid.uuid4().hex[:8]}"
    asyncio.run(postgres_admin(f'CREATE DATABASE "{name}"'))
    url = f"{POSTGRES_URL}/{name}"
    upgrade(url)
    yield url
    asyncio.run(postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
