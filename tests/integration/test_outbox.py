"""The transactional outbox (shared/outbox.py) on the real broker: a batch goes out
concurrently in the order it was staged, a publish that fails leaves only itself for the
relay; what this process saw commit is published from memory and marked later, and nothing
is published twice or lost whichever way a transaction ends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from shared.contracts import Envelope, ExecutionAlertRaised
from shared.db import create_engine, session_factory
from shared.messaging import Broker, BrokerUnavailableError, topology
from shared.outbox import Outbox, OutboxMessage
from shared.tasks import stop_tasks
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


ROUTABLE = (topology.TRADING_EXECUTION.name, "alert.TEST.ALL")  # to notify_events
NOWHERE = (topology.RISK_MANAGEMENT.name, "p95test.nowhere")  # no queue bound: returned


async def staged(outbox: Outbox, routes: list[tuple[str, str]]) -> list[Envelope]:
    """One message per (exchange, routing key), staged in one transaction."""
    envelopes = [alert(n) for n in range(len(routes))]
    async with outbox.sessions.begin() as session:
        for envelope, (exchange, routing_key) in zip(envelopes, routes, strict=True):
            outbox.stage(session, envelope, exchange, routing_key)
    return envelopes


async def unpublished(sessions) -> set[str]:
    async with sessions() as session:
        return set((await session.scalars(select(OutboxMessage.message_id).where(
            OutboxMessage.published_at.is_(None)))).all())


async def test_a_batch_is_published_in_the_order_it_was_staged(sessions, broker, amqp):
    envelopes = await staged(Outbox("execute", broker, sessions), [ROUTABLE] * 300)

    # A new process (start-up): read from the table.
    assert await Outbox("execute", broker, sessions).flush() == 300

    received = await drain(amqp, "notify_events", expect=300)
    assert [m.message_id for m in received] == [e.message_id for e in envelopes]
    assert await unpublished(sessions) == set()


async def test_a_failed_publish_leaves_only_itself_for_the_relay(sessions, broker, amqp):
    routable, nowhere = ROUTABLE, NOWHERE
    outbox = Outbox("execute", broker, sessions)
    await outbox.flush()  # the table read at start-up: empty
    envelopes = await staged(outbox, [routable, routable, nowhere, routable, routable])

    with pytest.raises(BrokerUnavailableError):
        await outbox.flush()

    lost = envelopes[2].message_id
    await outbox.close()  # the confirmed are marked
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


async def running(outbox: Outbox) -> Outbox:
    """Past its start-up flush (which reads the table): publishing from memory."""
    await outbox.flush()
    return outbox


async def test_a_committed_message_is_published_from_memory_and_marked_later(
        sessions, broker, amqp):
    outbox = await running(Outbox("execute", broker, sessions))
    envelopes = await staged(outbox, [ROUTABLE] * 3)
    async with sessions.begin() as session:  # the table now has nothing to give
        await session.execute(delete(OutboxMessage))

    assert await outbox.flush() == 3
    received = await drain(amqp, "notify_events", expect=3)
    assert [m.message_id for m in received] == [e.message_id for e in envelopes]
    assert await outbox.flush() == 0  # nothing twice


async def test_published_messages_are_marked_by_the_relay_or_a_clean_stop(sessions, broker,
                                                                          amqp):
    outbox = await running(Outbox("execute", broker, sessions))
    envelopes = await staged(outbox, [ROUTABLE] * 2)
    await outbox.flush()
    assert await unpublished(sessions) == {e.message_id for e in envelopes}  # not yet marked

    await outbox.close()

    assert await unpublished(sessions) == set()
    await drain(amqp, "notify_events", expect=2)
    assert await Outbox("execute", broker, sessions).flush() == 0  # the next start: nothing


async def test_after_a_crash_the_unmarked_are_sent_again_under_their_ids(sessions, broker,
                                                                         amqp):
    outbox = await running(Outbox("execute", broker, sessions))
    envelopes = await staged(outbox, [ROUTABLE] * 2)
    await outbox.flush()  # published; the process dies before marking them

    assert await Outbox("execute", broker, sessions).flush() == 2  # the next start

    received = await drain(amqp, "notify_events", expect=4)
    ids = [e.message_id for e in envelopes]
    assert [m.message_id for m in received] == ids + ids  # consumers dedupe by message id


async def test_a_rolled_back_transaction_publishes_nothing(sessions, broker, amqp):
    outbox = await running(Outbox("execute", broker, sessions))

    with pytest.raises(RuntimeError):
        async with sessions.begin() as session:
            outbox.stage(session, alert(1), *ROUTABLE)
            raise RuntimeError("the caller fails before its commit")

    assert await outbox.flush() == 0
    assert await drain(amqp, "notify_events", settle_s=0.5) == []
    assert await unpublished(sessions) == set()


async def test_after_a_failed_commit_the_table_decides(sessions, broker, amqp):
    """A commit that fails may have happened: the next flush reads the table."""
    outbox = await running(Outbox("execute", broker, sessions))
    envelope = alert(1)
    async with sessions.begin() as session:  # committed by another session: only the table
        session.add(OutboxMessage(
            message_id=envelope.message_id, producer="execute", exchange=ROUTABLE[0],
            routing_key=ROUTABLE[1], envelope=envelope.model_dump(mode="json"),
            created_at=datetime.now(UTC)))
    assert await outbox.flush() == 0  # memory does not know it

    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:  # the same message id again: refused
            outbox.stage(session, envelope, *ROUTABLE)

    assert await outbox.flush() == 1
    assert [m.message_id for m in await drain(amqp, "notify_events", expect=1)] \
        == [envelope.message_id]
    assert await unpublished(sessions) == set()


async def test_the_relay_sends_what_memory_missed_once(sessions, broker, amqp):
    outbox = await running(Outbox("execute", broker, sessions))
    envelopes = await staged(outbox, [ROUTABLE] * 2)  # committed, flush not yet called
    relay = asyncio.create_task(outbox.run_relay(0.05))
    try:
        received = await drain(amqp, "notify_events", expect=2)
    finally:
        await stop_tasks(relay)

    assert await outbox.flush() == 0  # the relay took them out of memory too
    assert [m.message_id for m in received] == [e.message_id for e in envelopes]
    assert await drain(amqp, "notify_events", settle_s=0.5) == []
    assert await unpublished(sessions) == set()


def test_an_outbox_refuses_a_broker_that_publishes_on_several_channels(sessions, broker):
    """Its batches go out concurrently: in order only on one channel."""
    spread = Broker(broker.settings, "execute", publish_channels=2)
    with pytest.raises(ValueError, match="one publishing channel"):
        Outbox("execute", spread, sessions)
