"""The transactional outbox (shared/outbox.py) on the real broker: a batch goes out
concurrently in the order it was staged, and a publish that fails leaves only itself for the
relay."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from shared.contracts import Envelope, ExecutionAlertRaised
from shared.db import create_engine, session_factory
from shared.messaging import BrokerUnavailableError, topology
from shared.outbox import Outbox, OutboxMessage, stage
from tests.integration.helpers import drain


@pytest.fixture
async def sessions(sqlite_url):
    db = create_engine(sqlite_url)
    yield session_factory(db)
    await db.dispose()


def alert(n: int) -> Envelope:
    payload = ExecutionAlertRaised(code="TEST", severity="info", message=f"#{n}",
                                   raised_at=datetime.now(UTC))
    return Envelope.wrap(payload, producer="execute", correlation_id=f"c{n}")


async def staged(sessions, routes: list[tuple[str, str]]) -> list[Envelope]:
    """One message per (exchange, routing key), staged in one transaction."""
    envelopes = [alert(n) for n in range(len(routes))]
    async with sessions.begin() as session:
        for envelope, (exchange, routing_key) in zip(envelopes, routes, strict=True):
            stage(session, envelope, exchange, routing_key)
    return envelopes


async def unpublished(sessions) -> set[str]:
    async with sessions() as session:
        return set((await session.scalars(select(OutboxMessage.message_id).where(
            OutboxMessage.published_at.is_(None)))).all())


async def test_a_batch_is_published_in_the_order_it_was_staged(sessions, broker, amqp):
    envelopes = await staged(sessions, [(topology.TRADING_EXECUTION.name, "alert.TEST.ALL")]
                             * 300)

    assert await Outbox("execute", broker, sessions).flush() == 300

    received = await drain(amqp, "notify_events", expect=300)
    assert [m.message_id for m in received] == [e.message_id for e in envelopes]
    assert await unpublished(sessions) == set()


async def test_a_failed_publish_leaves_only_itself_for_the_relay(sessions, broker, amqp):
    routable = (topology.TRADING_EXECUTION.name, "alert.TEST.ALL")
    nowhere = (topology.RISK_MANAGEMENT.name, "p95test.nowhere")  # no queue bound: returned
    envelopes = await staged(sessions, [routable, routable, nowhere, routable, routable])
    outbox = Outbox("execute", broker, sessions)

    with pytest.raises(BrokerUnavailableError):
        await outbox.flush()

    lost = envelopes[2].message_id
    assert await unpublished(sessions) == {lost}
    others = [e.message_id for e in envelopes if e.message_id != lost]
    assert [m.message_id for m in await drain(amqp, "notify_events", expect=4)] == others

    channel = await amqp.channel()  # a route appears: the relay's next round delivers it
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(topology.RISK_MANAGEMENT.name, nowhere[1])
    assert await outbox.flush() == 1
    assert await unpublished(sessions) == set()
    assert (await queue.get(timeout=5)).message_id == lost
    assert await drain(amqp, "notify_events", settle_s=0.5) == []  # nothing sent twice
    await channel.close()
