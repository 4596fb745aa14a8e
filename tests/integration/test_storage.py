"""The signals table on PostgreSQL, and the outbox relay that publishes what a crash left behind."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from services.brain.intake import Alert
from services.brain.models import SignalRecord
from services.brain.pipeline import envelopes_of
from tests.integration.conftest import API_KEY, alert, brain_settings, running_brain
from tests.integration.helpers import body, drain


async def test_brain_on_postgresql_stores_and_lists_signals(vhost, redis_prefix, postgres_url,
                                                             amqp):
    settings = brain_settings(vhost, redis_prefix, postgres_url)
    async with running_brain(settings) as brain:
        first = await brain.client.post("/webhook", json=alert(alert_id="pg-1"))
        second = await brain.client.post("/webhook", json=alert(alert_id="pg-2", symbol="ETHUSDT",
                                                                price=2500))
        health = await brain.client.get("/health")
        listed = await brain.client.get("/signals", headers={"X-API-Key": API_KEY})
        eth_only = await brain.client.get("/signals", params={"symbol": "ETHUSDT.P"},
                                          headers={"X-API-Key": API_KEY})

    assert (first.status_code, second.status_code, health.status_code) == (202, 202, 200)
    assert [s["signal_id"] for s in listed.json()] == [second.json()["signal_id"],
                                                       first.json()["signal_id"]]
    assert datetime.fromisoformat(listed.json()[0]["received_at"]).tzinfo is not None
    assert [s["symbol"] for s in eth_only.json()] == ["ETHUSDT"]


async def test_signals_needs_the_api_key(brain):
    assert (await brain.client.get("/signals")).status_code == 401
    bad = await brain.client.get("/signals", headers={"X-API-Key": "nope"})
    assert bad.status_code == 401
    assert (await brain.client.get("/signals", params={"limit": 0},
                                   headers={"X-API-Key": API_KEY})).status_code == 422


async def store_unpublished(pipeline, age_s: float):
    """What a crash between the insert and the publish leaves behind, `age_s` seconds ago."""
    analysis = await pipeline.analyze(Alert.model_validate(alert()), signal_id=str(uuid.uuid4()))
    received_at = datetime.now(UTC) - timedelta(seconds=age_s)
    analysis = analysis.model_copy(
        update={"signal": analysis.signal.model_copy(update={"received_at": received_at})})
    await pipeline._store(analysis, f"crash-{uuid.uuid4()}", {"symbol": "BTCUSDT"}, None)
    return analysis


async def test_a_signal_stored_but_never_published_is_relayed_once(brain, amqp):
    pipeline = brain.app.state.pipeline
    analysis = await store_unpublished(pipeline, age_s=60)

    assert await pipeline.relay_unpublished() == 1
    assert await pipeline.relay_unpublished() == 0

    [message] = await drain(amqp, "signal_processing", expect=1)
    expected_id = envelopes_of(analysis)[1][0].message_id  # the ids a first attempt had
    assert message.message_id == expected_id == body(message)["message_id"]
    async with pipeline.sessions() as session:
        row = await session.get(SignalRecord, analysis.signal.signal_id)
    assert row is not None and row.published_at is not None


async def test_a_stale_unpublished_signal_is_not_relayed(brain, amqp):
    pipeline = brain.app.state.pipeline
    await store_unpublished(pipeline, age_s=600)

    assert await pipeline.relay_unpublished() == 0
    assert await drain(amqp, "signal_processing", settle_s=0.7) == []


async def test_a_fresh_unpublished_signal_is_left_to_its_request(brain, amqp):
    pipeline = brain.app.state.pipeline
    await store_unpublished(pipeline, age_s=0)

    assert await pipeline.relay_unpublished() == 0
    async with pipeline.sessions() as session:
        assert (await session.scalars(select(SignalRecord.published_at))).one() is None


async def test_analyze_scores_the_worked_example_without_side_effects(brain, amqp):
    fields = {"symbol": "BTCUSDT", "action": "buy", "price": 43123.5, "confidence": 0.9,
              "rsi": 50}
    unauthorised = await brain.client.post("/analyze", json=fields)
    response = await brain.client.post("/analyze", json=fields, headers={"X-API-Key": API_KEY})

    assert unauthorised.status_code == 401
    assert response.status_code == 200
    assert response.json() == {
        "signal_id": None, "symbol": "BTCUSDT", "side": "long", "decision": "EXECUTE",
        "reasons": [],
        "scores": {"technical": 0.99, "phoenix": 0.8025, "market": 0.56, "composite": 0.81025,
                   "phoenix95": 0.81025, "final_confidence": 1.0},
        "sizing": {"win_rate": 0.55, "payoff_ratio": 1.0, "kelly": 0.1, "margin_fraction": 0.02},
        "leverage": 20, "entry_price": 43123.5, "stop_loss": 42261.0, "take_profit": 43986.0,
    }
    bad = await brain.client.post("/analyze", json=fields | {"price": "abc"},
                                  headers={"X-API-Key": API_KEY})
    assert bad.status_code == 422
    listed = await brain.client.get("/signals", headers={"X-API-Key": API_KEY})
    assert listed.json() == []
    assert await drain(amqp, "notify_events", settle_s=0.7) == []


async def test_analyze_reads_open_positions_and_performance_from_redis(brain, amqp):
    from redis.asyncio import Redis

    from tests.conftest import REDIS_URL

    redis = Redis.from_url(REDIS_URL)
    prefix = brain.settings.redis_prefix
    await redis.hset(prefix + "positions:open", mapping={f"S{i}USDT": "{}" for i in range(11)})
    await redis.hset(prefix + "performance", mapping={
        "win_rate": 0.3, "avg_win": 10, "avg_loss": -10, "total_trades": 20})
    await redis.aclose()

    response = await brain.client.post(
        "/analyze", json={"symbol": "BTCUSDT", "action": "buy", "price": 43123.5,
                          "confidence": 0.9, "rsi": 50}, headers={"X-API-Key": API_KEY})

    analysis = response.json()
    # win rate 0.3 → M 0.5; 11 open positions → crowd 0.90; p 0.3, b 1 → f* −0.4: no edge.
    assert analysis["scores"]["market"] == 0.5
    assert analysis["scores"]["phoenix"] == 0.7825
    assert analysis["sizing"]["kelly"] == -0.4
    assert analysis["decision"] == "HOLD"
    assert analysis["reasons"][0]["code"] == "NO_EDGE"
