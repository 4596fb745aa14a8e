"""What BRAIN writes in batches: concurrent webhooks' rows together (services/brain/batching.py),
on PostgreSQL and SQLite, one row's failure staying that row's; `signal:stream` entries and
published marks after the answer, flushed at shutdown."""

from __future__ import annotations

import asyncio
import faulthandler
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import event, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from services.brain.batching import BatchInserter
from services.brain.intake import Alert, idempotency_key
from services.brain.models import SignalRecord
from shared.db import create_engine, session_factory
from tests.conftest import REDIS_URL
from tests.integration.conftest import API_KEY, alert, brain_settings, running_brain
from tests.integration.helpers import drain


def row(key: str, **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "signal_id": str(uuid.uuid4()), "idempotency_key": key, "symbol": "BTCUSDT",
        "action": "long", "price": 43123.5, "strategy": "p95-test", "timeframe": "15m",
        "alert_id": None, "sent_at": None, "received_at": now, "source_ip": "127.0.0.1",
        "decision": "EXECUTE", "phoenix95_score": 0.81, "raw": {"symbol": "BTCUSDT"},
        "analysis": {}, "published_at": None,
    } | fields


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def stored_keys(sessions) -> list[str]:
    async with sessions() as session:
        return sorted((await session.scalars(select(SignalRecord.idempotency_key))).all())


async def test_concurrent_rows_share_one_insert_and_a_duplicate_fails_alone(sessions):
    inserter = BatchInserter(sessions, SignalRecord.__table__)
    await inserter.insert(row("taken"))
    statements = []

    def count(conn, cursor, statement, *args):
        if statement.startswith("INSERT"):
            statements.append(statement)

    engine = sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        outcomes = await asyncio.gather(
            *(inserter.insert(row(f"k{i}")) for i in range(5)),
            inserter.insert(row("taken")),
            *(inserter.insert(row(f"k{i}")) for i in range(5, 10)),
            return_exceptions=True,
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)

    assert outcomes[:5] + outcomes[6:] == [None] * 10
    assert isinstance(outcomes[5], IntegrityError)
    assert await stored_keys(sessions) == sorted(["taken", *(f"k{i}" for i in range(10))])
    # One INSERT for the batch, then one per row to find the duplicate.
    assert len(statements) == 1 + 11


async def test_a_row_the_column_refuses_fails_alone(postgres_url):
    engine = create_engine(postgres_url)
    sessions = session_factory(engine)
    try:
        inserter = BatchInserter(sessions, SignalRecord.__table__)
        outcomes = await asyncio.gather(
            inserter.insert(row("a")), inserter.insert(row("b", source_ip="x" * 46)),
            inserter.insert(row("c")), return_exceptions=True)
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], DBAPIError)
        assert await stored_keys(sessions) == ["a", "c"]
    finally:
        await engine.dispose()


async def test_a_caller_gone_before_the_write_gets_no_row(sessions):
    inserter = BatchInserter(sessions, SignalRecord.__table__)
    first = asyncio.ensure_future(inserter.insert(row("first")))
    gone = asyncio.ensure_future(inserter.insert(row("gone")))
    await asyncio.sleep(0)  # both queued, the writer not yet started
    gone.cancel()
    await first
    await asyncio.gather(gone, return_exceptions=True)
    await inserter.insert(row("last"))
    assert await stored_keys(sessions) == ["first", "last"]


async def test_a_burst_on_postgresql_is_stored_once_each_and_a_lost_claim_is_a_duplicate(
        vhost, redis_prefix, postgres_url, amqp):
    settings = brain_settings(vhost, redis_prefix, postgres_url)
    async with running_brain(settings) as brain:
        first = await brain.client.post("/webhook", json=alert(alert_id="burst-0"))
        # Redis forgets the claim (a restart): only the table still knows the alert.
        redis = Redis.from_url(REDIS_URL)
        key = idempotency_key(Alert.model_validate(alert(alert_id="burst-0"))).key
        await redis.delete(f"{redis_prefix}dedupe:{key}")
        await redis.aclose()

        responses = await asyncio.gather(*(
            brain.client.post("/webhook", json=alert(alert_id=f"burst-{i}")) for i in range(30)))
        listed = await brain.client.get("/signals", params={"limit": 100},
                                        headers={"X-API-Key": API_KEY})
        async with brain.app.state.pipeline.sessions() as session:
            rows = await session.scalar(select(func.count()).select_from(SignalRecord))

    assert first.status_code == 202
    assert responses[0].status_code == 200
    assert responses[0].json() == {"status": "duplicate", "signal_id": first.json()["signal_id"]}
    assert [r.status_code for r in responses[1:]] == [202] * 29
    assert rows == 30
    assert len({s["signal_id"] for s in listed.json()}) == 30
    # Each accepted alert reached RISK once; the duplicate added nothing.
    assert len(await drain(amqp, "signal_processing", expect=30)) == 30


async def test_stopping_right_after_answering_loses_no_stream_entry_nor_mark(make_brain, amqp,
                                                                            sqlite_url):
    # Shutdown comes while the last signal's stream entry and mark may be in flight: it waits
    # for them (nothing dropped), and must not hang. Were it stuck, no asyncio timeout could end
    # the test (the lifespan swallows the CancelledError): the watchdog thread does.
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        for i in range(20):
            async with make_brain() as brain:
                response = await brain.client.post("/webhook", json=alert(alert_id=f"stop-{i}"))
                assert response.status_code == 202
    finally:
        faulthandler.cancel_dump_traceback_later()

    redis = Redis.from_url(REDIS_URL)
    entries = await redis.xlen(brain.settings.redis_prefix + "signal:stream")
    await redis.aclose()
    engine = create_engine(sqlite_url)
    async with session_factory(engine)() as session:
        unmarked = await session.scalar(select(func.count()).select_from(SignalRecord)
                                         .where(SignalRecord.published_at.is_(None)))
    await engine.dispose()
    assert (entries, unmarked) == (20, 0)
