"""RabbitMQ stopped under a running BRAIN: 503, nothing half-done, recovery by itself."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from services.brain.intake import Alert, idempotency_key
from shared.messaging import BrokerUnavailableError
from tests.conftest import REDIS_URL, rabbitmqctl
from tests.integration.conftest import API_KEY, alert
from tests.integration.helpers import drain


async def _until(predicate, timeout_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_broker_down_means_503_nothing_stored_and_recovery(brain, amqp):
    payload = alert(alert_id="outage-1")
    claim = brain.settings.redis_prefix + "dedupe:" + idempotency_key(
        Alert.model_validate(payload)).key
    redis = Redis.from_url(REDIS_URL, decode_responses=True)

    async def brain_disconnected() -> bool:
        return not brain.app.state.broker.connected

    await asyncio.to_thread(rabbitmqctl, "stop_app")
    try:
        await _until(brain_disconnected, 15, "BRAIN to notice the broker is gone")

        webhook = await brain.client.post("/webhook", json=payload)
        assert webhook.status_code == 503
        health = await brain.client.get("/health")
        assert health.status_code == 503
        assert health.json()["checks"]["rabbitmq"].startswith("down")
        assert health.json()["checks"]["redis"] == "ok"

        # Past the quick check, a publish that cannot be confirmed undoes everything.
        with pytest.raises(BrokerUnavailableError):
            await brain.app.state.pipeline.accept(Alert.model_validate(payload), payload, None)
        assert await redis.exists(claim) == 0
        signals = await brain.client.get("/signals", headers={"X-API-Key": API_KEY})
        assert signals.json() == []
    finally:
        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmqctl, "await_startup")

    async def healthy() -> bool:
        return (await brain.client.get("/health")).status_code == 200

    await _until(healthy, 30, "BRAIN to reconnect by itself")
    again = await brain.client.post("/webhook", json=payload)
    assert again.status_code == 202
    await redis.aclose()

    await asyncio.wait_for(amqp.connected.wait(), 30)
    assert len(await drain(amqp, "signal_processing", expect=1)) == 1


async def test_brain_starts_without_the_broker_and_connects_when_it_comes(
    vhost, redis_prefix, sqlite_url, amqp
):
    import httpx

    from services.brain.app import create_app
    from tests.integration.conftest import brain_settings

    app = create_app(brain_settings(vhost, redis_prefix, sqlite_url))
    await asyncio.to_thread(rabbitmqctl, "stop_app")
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://brain") as client:
                health = await client.get("/health")
                webhook = await client.post("/webhook", json=alert(alert_id="early"))
                await asyncio.to_thread(rabbitmqctl, "start_app")
                await asyncio.to_thread(rabbitmqctl, "await_startup")

                async def healthy() -> bool:
                    return (await client.get("/health")).status_code == 200

                await _until(healthy, 60, "BRAIN to connect once the broker is up")
                accepted = await client.post("/webhook", json=alert(alert_id="early"))
    finally:
        await asyncio.to_thread(rabbitmqctl, "start_app")
    assert health.status_code == 503 and health.json()["checks"]["rabbitmq"].startswith("down")
    assert webhook.status_code == 503
    assert accepted.status_code == 202
