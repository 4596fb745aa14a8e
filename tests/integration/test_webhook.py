"""POST /webhook against real RabbitMQ, Redis and SQLite (brain.md, "Webhook contract")."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL
from tests.integration.conftest import API_KEY, WEBHOOK_SECRET, alert
from tests.integration.helpers import body, drain
from tests.stack import until

NOTHING = 0.7  # seconds of quiet that prove nothing was published


async def test_accepted_alert_reaches_signal_processing_in_the_full_envelope(brain, amqp):
    response = await brain.client.post("/webhook", json=alert())

    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["status"] == "accepted" and answer["decision"] == "EXECUTE"
    signal_id = answer["signal_id"]

    [message] = await drain(amqp, "signal_processing", expect=1)
    envelope = body(message)
    assert set(envelope) == {"type", "version", "message_id", "correlation_id", "causation_id",
                             "produced_at", "producer", "payload"}
    assert envelope["type"] == "signal.analyzed" and envelope["version"] == 1
    assert envelope["producer"] == "brain" and envelope["correlation_id"] == signal_id
    datetime.fromisoformat(envelope["produced_at"])
    # AMQP properties mirror the envelope; persistent JSON.
    assert message.message_id == envelope["message_id"]
    assert message.correlation_id == signal_id
    assert message.type == "signal.analyzed"
    assert message.content_type == "application/json"
    assert message.delivery_mode == 2
    assert message.timestamp is not None
    payload = envelope["payload"]
    assert payload["decision"] == "EXECUTE"
    assert payload["signal"]["symbol"] == "BTCUSDT" and payload["signal"]["signal_id"] == signal_id
    assert payload["scores"]["phoenix95"] == pytest.approx(0.81025)
    assert payload["sizing"]["margin_fraction"] == pytest.approx(0.02)
    assert (payload["stop_loss"], payload["take_profit"]) == (42261.0, 43986.0)

    # NOTIFY's queue sees both the received signal and the analysis, causally linked.
    events = await drain(amqp, "notify_events", expect=2)
    by_type = {body(m)["type"]: m for m in events}
    assert set(by_type) == {"signal.received", "signal.analyzed"}
    assert by_type["signal.received"].routing_key == "signal.received.BTCUSDT"
    assert body(by_type["signal.analyzed"])["causation_id"] == body(
        by_type["signal.received"])["message_id"]


async def test_accepted_signal_is_stored_and_streamed(brain, amqp):
    response = await brain.client.post("/webhook", json=alert(alert_id="stored-1", rsi=None))
    signal_id = response.json()["signal_id"]

    async def marked() -> list[dict] | None:
        # Marked published just after the answer, in a batch (not on the webhook's path).
        listed = (await brain.client.get("/signals", headers={"X-API-Key": API_KEY})).json()
        return listed if listed[0]["published"] else None

    [row] = await until(marked, 2, what="the signal marked published")
    assert row["signal_id"] == signal_id
    assert row["analysis"]["decision"] == response.json()["decision"]

    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    entries = await redis.xrange(brain.settings.redis_prefix + "signal:stream")
    await redis.aclose()
    assert [e[1]["signal_id"] for e in entries] == [signal_id]
    assert json.loads(entries[0][1]["analysis"])["signal"]["alert_id"] == "stored-1"


async def test_the_secret_is_never_stored(brain, amqp):
    await brain.client.post("/webhook", json=alert(custom_field="kept"))
    [message] = await drain(amqp, "signal_processing", expect=1)
    assert WEBHOOK_SECRET.encode() not in message.body
    from sqlalchemy import select

    from services.brain.models import SignalRecord

    async with brain.app.state.pipeline.sessions() as session:
        record = (await session.scalars(select(SignalRecord))).one()
    assert record.raw["custom_field"] == "kept" and "secret" not in record.raw


async def test_hold_is_published_to_signal_hold_not_to_risk(brain, amqp):
    response = await brain.client.post("/webhook", json=alert(confidence=0.3))

    assert response.json()["decision"] == "HOLD"
    assert await drain(amqp, "signal_processing", settle_s=NOTHING) == []
    routing_keys = {m.routing_key for m in await drain(amqp, "notify_events", expect=2)}
    assert routing_keys == {"signal.hold", "signal.received.BTCUSDT"}


async def test_close_goes_to_risk_unscored(brain, amqp):
    response = await brain.client.post("/webhook", json=alert(action="EXIT"))

    assert response.json()["decision"] == "CLOSE"
    [message] = await drain(amqp, "signal_processing", expect=1)
    assert body(message)["payload"]["scores"] is None


async def test_same_alert_five_times_in_a_row_is_published_once(brain, amqp):
    answers = [await brain.client.post("/webhook", json=alert()) for _ in range(5)]

    assert [a.status_code for a in answers] == [202, 200, 200, 200, 200]
    first = answers[0].json()["signal_id"]
    assert all(a.json() == {"status": "duplicate", "signal_id": first} for a in answers[1:])
    assert len(await drain(amqp, "signal_processing", settle_s=NOTHING)) == 1


async def test_same_alert_five_times_at_once_is_published_once(brain, amqp):
    answers = await asyncio.gather(
        *(brain.client.post("/webhook", json=alert(alert_id="burst-1")) for _ in range(5))
    )

    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 202]
    assert len({a.json()["signal_id"] for a in answers}) == 1
    assert len(await drain(amqp, "signal_processing", settle_s=NOTHING)) == 1


async def test_alert_without_id_or_time_is_deduplicated_within_the_window(brain, amqp):
    plain = alert(sent_at=None)
    first = await brain.client.post("/webhook", json=plain)
    again = await brain.client.post("/webhook", json=plain | {"symbol": "btcusdt"})
    other_price = await brain.client.post("/webhook", json=plain | {"price": 43124})

    assert (first.status_code, again.status_code, other_price.status_code) == (202, 200, 202)
    assert len(await drain(amqp, "signal_processing", expect=2, settle_s=NOTHING)) == 2


@pytest.mark.parametrize(
    "symbol", ["BTCUSDT", "btcusdt", "BTCUSDT.P", "BINANCE:BTCUSDT.P", "BTC/USDT:USDT"]
)
async def test_every_symbol_form_is_routed_as_btcusdt(brain, amqp, symbol):
    response = await brain.client.post("/webhook", json=alert(symbol=symbol, alert_id=symbol))

    assert response.status_code == 202
    keys = {m.routing_key for m in await drain(amqp, "notify_events", expect=2)}
    assert "signal.received.BTCUSDT" in keys


async def test_json_sent_as_text_plain_is_accepted(brain, amqp):
    response = await brain.client.post(
        "/webhook", content=json.dumps(alert()), headers={"Content-Type": "text/plain"}
    )

    assert response.status_code == 202
    assert len(await drain(amqp, "signal_processing", expect=1)) == 1


async def test_secret_in_the_query_string_is_accepted(brain, amqp):
    response = await brain.client.post(
        "/webhook", params={"token": WEBHOOK_SECRET}, json=alert(secret=None)
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({}, {"secret": None}),
        ({}, {"secret": "wrong"}),
        ({}, {"secret": 12345}),
        ({"token": "wrong"}, {"secret": None}),
        ({"token": "wrong"}, {}),  # a bad token is not rescued by a good body secret
    ],
    ids=["missing", "wrong", "not-a-string", "wrong-token", "wrong-token-good-body"],
)
async def test_bad_or_missing_secret_is_401_and_publishes_nothing(brain, amqp, params, fields):
    response = await brain.client.post("/webhook", params=params, json=alert(**fields))

    assert response.status_code == 401
    assert await drain(amqp, "notify_events", settle_s=NOTHING) == []


async def test_source_outside_the_allowlist_is_403(make_brain, amqp):
    async with make_brain(client_ip="10.9.8.7", webhook_allowed_ips="52.89.214.238") as brain:
        response = await brain.client.post("/webhook", json=alert())
    assert response.status_code == 403
    assert await drain(amqp, "notify_events", settle_s=NOTHING) == []


async def test_tradingview_address_in_the_allowlist_is_accepted(make_brain, amqp):
    allow = "52.89.214.238,34.212.75.30,54.218.53.128,52.32.178.7"
    async with make_brain(client_ip="34.212.75.30", webhook_allowed_ips=allow) as brain:
        response = await brain.client.post("/webhook", json=alert())
    assert response.status_code == 202


async def test_forwarded_for_counts_only_from_a_trusted_proxy(make_brain, amqp):
    settings = {"webhook_allowed_ips": "52.89.214.238", "trusted_proxies": "10.0.0.0/8"}
    forwarded = {"X-Forwarded-For": "52.89.214.238"}
    async with make_brain(client_ip="10.0.0.5", **settings) as brain:
        via_proxy = await brain.client.post("/webhook", json=alert(), headers=forwarded)
    async with make_brain(client_ip="192.0.2.1", **settings) as brain:
        spoofed = await brain.client.post("/webhook", json=alert(alert_id="x"), headers=forwarded)
    assert (via_proxy.status_code, spoofed.status_code) == (202, 403)


async def test_body_over_16_kib_is_413(brain, amqp):
    response = await brain.client.post("/webhook", json=alert(note="x" * 16 * 1024))

    assert response.status_code == 413
    assert await drain(amqp, "notify_events", settle_s=NOTHING) == []


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ('{"secret": "' + WEBHOOK_SECRET + '", "symbol": "BTCUSDT",', "body"),
        ("[1, 2, 3]", "body"),
        (f'{{"secret": "{WEBHOOK_SECRET}", "symbol": "BTCUSDT", "action": "buy", '
         '"price": NaN}', "body"),
    ],
    ids=["truncated", "not-an-object", "nan"],
)
async def test_malformed_json_is_422(brain, amqp, content, field):
    response = await brain.client.post("/webhook", content=content)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == [field]
    assert await drain(amqp, "notify_events", settle_s=NOTHING) == []


async def test_bad_fields_are_422_with_each_field_named(brain, amqp):
    response = await brain.client.post(
        "/webhook",
        json=alert(symbol="???", action="hodl", price=-1, confidence=1.5, rsi=101,
                   volume=-3, timeframe="7x", sent_at="yesterday", strategy="s" * 65),
    )

    assert response.status_code == 422
    fields = {error["loc"][-1] for error in response.json()["detail"]}
    assert fields == {"symbol", "action", "price", "confidence", "rsi", "volume", "timeframe",
                      "sent_at", "strategy"}
    assert await drain(amqp, "notify_events", settle_s=NOTHING) == []


async def test_missing_required_fields_are_422(brain):
    response = await brain.client.post("/webhook", json={"secret": WEBHOOK_SECRET})

    assert response.status_code == 422
    assert {e["loc"][-1] for e in response.json()["detail"]} == {"symbol", "action", "price"}


async def test_the_121st_request_in_a_minute_is_429(brain, amqp):
    statuses = [
        (await brain.client.post("/webhook", json=alert(secret="wrong"))).status_code
        for _ in range(121)
    ]

    assert statuses[:120] == [401] * 120
    assert statuses[120] == 429
    # Even a valid alert from that source is refused until the minute has passed.
    assert (await brain.client.post("/webhook", json=alert())).status_code == 429
    assert await drain(amqp, "notify_events", settle_s=NOTHING) == []


async def test_health_reports_every_dependency(brain):
    response = await brain.client.get("/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok", "service": "brain",
        "checks": {"rabbitmq": "ok", "redis": "ok", "db": "ok"},
    }


async def test_metrics_count_webhook_answers(brain, amqp):
    await brain.client.post("/webhook", json=alert(secret="wrong"))
    metrics = (await brain.client.get("/metrics")).text

    assert 'phoenix95_webhook_requests_total{status="401"}' in metrics
    assert 'phoenix95_http_requests_total{method="POST",path="/webhook"' in metrics


async def test_a_duplicate_redis_forgot_is_caught_by_the_signals_table(brain, amqp):
    first = await brain.client.post("/webhook", json=alert(alert_id="forgotten"))
    redis = Redis.from_url(REDIS_URL)
    await redis.delete(brain.settings.redis_prefix + "dedupe:alert:forgotten")  # e.g. a restart
    await redis.aclose()

    again = await brain.client.post("/webhook", json=alert(alert_id="forgotten"))

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"status": "duplicate", "signal_id": first.json()["signal_id"]}
    assert len(await drain(amqp, "signal_processing", settle_s=NOTHING)) == 1


@pytest.mark.parametrize(
    "content",
    [
        f'{{"secret": "{WEBHOOK_SECRET}", "symbol": "BTCUSDT", "action": "buy", '
        f'"price": 43000, "macd": 1{"0" * 400}}}',
        f'{{"secret": "{WEBHOOK_SECRET}", "symbol": "BTCUSDT", "action": "buy", '
        '"price": 1e30}',
        f'{{"secret": "{WEBHOOK_SECRET}", "symbol": "BTCUSDT", "action": "buy", '
        '"price": 43000, "sent_at": "0001-01-01T00:00:00+01:00"}',
        f'{{"secret": "{WEBHOOK_SECRET}", "symbol": "BTCUSDT", "action": "buy", '
        '"price": 43000, "strategy": "a\\u0000b"}',
        "[" * 5000 + "]" * 5000,
    ],
    ids=["huge-integer", "huge-price", "year-one-with-offset", "nul-in-strategy", "deep-nesting"],
)
async def test_pathological_input_is_422_never_5xx(brain, amqp, content):
    response = await brain.client.post("/webhook", content=content)

    assert response.status_code == 422, response.text
    assert await drain(amqp, "notify_events", settle_s=NOTHING) == []


async def test_a_price_too_near_zero_to_size_is_422(brain, amqp):
    response = await brain.client.post("/webhook", json=alert(price=2.2e-311))

    assert response.status_code == 422
    assert [e["loc"][-1] for e in response.json()["detail"]] == ["price"]
    assert await drain(amqp, "notify_events", settle_s=NOTHING) == []


async def test_a_burst_of_accepted_signals_is_all_marked_published(brain, amqp):
    answers = await asyncio.gather(*(brain.client.post("/webhook", json=alert(
        alert_id=f"marked-{i}")) for i in range(30)))
    assert [a.status_code for a in answers] == [202] * 30

    async def all_marked() -> bool:
        listed = (await brain.client.get("/signals", headers={"X-API-Key": API_KEY})).json()
        return len(listed) == 30 and all(row["published"] for row in listed)

    await until(all_marked, 5, what="every signal marked published")
    # Nothing left for the outbox relay to send again.
    pipeline = brain.app.state.pipeline
    pipeline.settings.outbox_grace_s = 0
    assert await pipeline.relay_unpublished() == 0
