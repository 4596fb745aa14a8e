"""A publish that fails half-way: nothing reaches RISK twice, nothing is lost."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from services.brain.intake import Alert, idempotency_key
from shared.config import Settings
from shared.contracts import Envelope
from shared.messaging import Broker, BrokerUnavailableError, topology
from shared.messaging.broker import declare_topology
from tests.conftest import AMQP_URL, REDIS_URL
from tests.integration.conftest import API_KEY, alert
from tests.integration.helpers import body, drain


async def _claim_exists(brain, payload) -> bool:
    key = idempotency_key(Alert.model_validate(payload)).key
    redis = Redis.from_url(REDIS_URL)
    try:
        return bool(await redis.exists(brain.settings.redis_prefix + "dedupe:" + key))
    finally:
        await redis.aclose()


async def test_received_event_refused_means_503_and_nothing_for_risk(brain, amqp):
    channel = await amqp.channel()
    await channel.queue_delete("notify_events", if_unused=False, if_empty=False)
    payload = alert(alert_id="no-route-1")

    response = await brain.client.post("/webhook", json=payload)

    assert response.status_code == 503
    assert await drain(amqp, "signal_processing", settle_s=0.7) == []
    assert not await _claim_exists(brain, payload)
    stored = await brain.client.get("/signals", headers={"X-API-Key": API_KEY})
    assert stored.json() == []
    await declare_topology(channel)
    assert (await brain.client.post("/webhook", json=payload)).status_code == 202


async def test_analysis_refused_is_kept_and_relayed_once(make_brain, amqp):
    async with make_brain(outbox_grace_s=0.3, outbox_interval_s=0.3) as brain:
        channel = await amqp.channel()
        await channel.queue_delete("signal_processing", if_unused=False, if_empty=False)
        notify = await channel.get_queue("notify_events")
        for key in (topology.SIGNAL_PROCESS, topology.SIGNAL_HOLD):
            await notify.unbind(topology.ANALYSIS.name, key)
        payload = alert(alert_id="no-route-2")

        failed = await brain.client.post("/webhook", json=payload)
        resent = await brain.client.post("/webhook", json=payload)
        assert failed.status_code == 503
        assert resent.json() == {"status": "duplicate", "signal_id": resent.json()["signal_id"]}
        assert await _claim_exists(brain, payload)

        await declare_topology(channel)  # the broker's routes are back
        [message] = await drain(amqp, "signal_processing", expect=1, timeout_s=15)
        assert body(message)["correlation_id"] == resent.json()["signal_id"]
        await asyncio.sleep(1.0)  # a few more relay rounds: still only one
        assert await drain(amqp, "signal_processing", settle_s=0.7) == []
        listed = await brain.client.get("/signals", headers={"X-API-Key": API_KEY})
        assert [s["published"] for s in listed.json()] == [True]


async def test_publishes_spread_over_channels_are_each_confirmed_or_refused(vhost, amqp):
    broker = Broker(Settings(_env_file=None, amqp_url=AMQP_URL, amqp_vhost=vhost), "test",
                    publish_channels=4)
    await broker.connect()

    def envelope(i: int) -> Envelope:
        return Envelope(type="test", correlation_id=str(i), producer="test", payload={"i": i})

    try:
        await asyncio.gather(*(broker.publish(envelope(i), topology.ANALYSIS.name,
                                              topology.SIGNAL_HOLD) for i in range(40)))
        delivered = await drain(amqp, "notify_events", expect=40)
        # Channels are taken in turn: one unroutable publish on each, each refused.
        for i in range(4):
            with pytest.raises(BrokerUnavailableError):
                await broker.publish(envelope(i), topology.ANALYSIS.name, "routed-nowhere")
    finally:
        await broker.close()
    assert sorted(body(m)["payload"]["i"] for m in delivered) == list(range(40))
