"""BRAIN running in-process (lifespan and all) against the real broker, Redis and database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.brain.app import create_app
from services.brain.settings import BrainSettings
from shared.config import Settings
from shared.messaging import Broker
from tests.conftest import AMQP_URL, REDIS_URL

WEBHOOK_SECRET = "test-webhook-secret-7f3a"
API_KEY = "test-api-key-5c1d9e"


@dataclass
class Brain:
    app: FastAPI
    client: httpx.AsyncClient
    settings: BrainSettings


def infrastructure(vhost: str, redis_prefix: str, database_url: str) -> dict[str, Any]:
    """The settings every service under test shares: the test's broker vhost, Redis prefix
    and database."""
    return {
        "amqp_url": AMQP_URL, "amqp_vhost": vhost, "redis_url": REDIS_URL,
        "redis_prefix": redis_prefix, "database_url": database_url,
        "phoenix95_api_keys": API_KEY, "amqp_reconnect_interval_s": 0.5,
    }


def brain_settings(vhost: str, redis_prefix: str, database_url: str, **overrides: Any
                   ) -> BrainSettings:
    values = infrastructure(vhost, redis_prefix, database_url) | {
        "webhook_secret": WEBHOOK_SECRET}
    return BrainSettings(_env_file=None, **(values | overrides))


@asynccontextmanager
async def running_brain(settings: BrainSettings, client_ip: str = "127.0.0.1"
                        ) -> AsyncIterator[Brain]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.broker.wait_connected(), 30)
        transport = httpx.ASGITransport(app=app, client=(client_ip, 43210))
        async with httpx.AsyncClient(transport=transport, base_url="http://brain") as client:
            yield Brain(app, client, settings)


@pytest.fixture
def make_brain(vhost: str, redis_prefix: str, sqlite_url: str, amqp: Any
               ) -> Callable[..., Any]:
    """Builds a running BRAIN with settings overrides: `async with make_brain(**kw) as brain`."""

    def factory(client_ip: str = "127.0.0.1", **overrides: Any) -> Any:
        settings = brain_settings(vhost, redis_prefix, sqlite_url, **overrides)
        return running_brain(settings, client_ip)

    return factory


def risk_factory(vhost: str, redis_prefix: str, database_url: str) -> Callable[..., Any]:
    # Imported here: risk_fixtures imports this module.
    from tests.integration.risk_fixtures import risk_settings, running_risk

    def factory(**overrides: Any) -> Any:
        return running_risk(risk_settings(vhost, redis_prefix, database_url, **overrides))

    return factory


@pytest.fixture
def make_risk(vhost: str, redis_prefix: str, sqlite_url: str, amqp: Any) -> Callable[..., Any]:
    """Builds a running RISK on SQLite with settings overrides: `async with make_risk(**kw)`."""
    return risk_factory(vhost, redis_prefix, sqlite_url)


@pytest.fixture
def make_risk_on_postgres(vhost: str, redis_prefix: str, postgres_url: str, amqp: Any
                          ) -> Callable[..., Any]:
    return risk_factory(vhost, redis_prefix, postgres_url)


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    """The test run on PostgreSQL, then on SQLite."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else sqlite_url


@pytest.fixture
def make_execute(vhost: str, redis_prefix: str, sqlite_url: str, amqp: Any
                 ) -> Callable[..., Any]:
    """Builds a running EXECUTE (on SQLite unless `database_url` is given) with settings
    overrides: `async with make_execute(**kw)`."""
    # Imported here: execute_fixtures imports this module.
    from tests.integration.execute_fixtures import execute_settings, running_execute

    def factory(clock: Callable[[], Any] | None = None, database_url: str | None = None,
                **overrides: Any) -> Any:
        settings = execute_settings(vhost, redis_prefix, database_url or sqlite_url,
                                    **overrides)
        return running_execute(settings, clock=clock)

    return factory


@pytest.fixture
async def brain(make_brain: Callable[..., Any]) -> AsyncIterator[Brain]:
    async with make_brain() as running:
        yield running


def alert(**fields: Any) -> dict[str, Any]:
    """The spec's worked example, as TradingView would send it, with overrides."""
    body: dict[str, Any] = {
        "secret": WEBHOOK_SECRET, "symbol": "BINANCE:BTCUSDT.P", "action": "buy",
        "price": "43123.5", "confidence": 0.9, "rsi": 50, "strategy": "p95-test",
        "timeframe": "15", "sent_at": "2026-11-20T12:00:00Z",
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
async def broker(vhost: str, amqp: Any) -> AsyncIterator[Broker]:
    """A publisher on the test vhost, playing whichever service a test needs."""
    publisher = Broker(Settings(_env_file=None, amqp_url=AMQP_URL, amqp_vhost=vhost), "test")
    await publisher.connect()
    yield publisher
    await publisher.close()
