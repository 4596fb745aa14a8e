"""The consumer's promises (messaging.md, "Guarantees"): ack after success, retry with backoff,
dead-letter with the reason."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aio_pika
import pytest

from shared.contracts import Action, Envelope, MessagePayload, Signal, SignalReceived
from shared.messaging import Broker, Consumer, TransientError, topology
from shared.messaging.consumer import ATTEMPTS_HEADER, REASON_HEADER
from tests.integration.helpers import drain

QUEUE = "risk_control"
EXCHANGE = topology.CONTROL.name
ROUTING_KEY = "control.trading_state"


def envelope() -> Envelope:
    signal = Signal(signal_id="s-1", symbol="BTCUSDT", action=Action.LONG, price=1.0,
                    confidence=0.9, strategy="t", received_at=datetime.now(UTC))
    return Envelope.wrap(SignalReceived(signal=signal), producer="test", correlation_id="s-1")


class Recorder:
    """A handler that fails as told, recording when it was called."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls: list[float] = []
        self.handled: list[Envelope] = []
        self.done = asyncio.Event()

    async def __call__(self, message: Envelope, payload: MessagePayload) -> None:
        assert isinstance(payload, SignalReceived)
        self.calls.append(asyncio.get_running_loop().time())
        if self.failures:
            raise self.failures.pop(0)
        self.handled.append(message)
        self.done.set()


async def consume(broker: Broker, handler: Recorder) -> Consumer:
    consumer = Consumer(broker, QUEUE, handler, prefetch=4, backoff_base_s=0.1,
                        backoff_cap_s=0.4)
    await consumer.start()
    return consumer


async def test_success_is_acked_once(broker, amqp):
    handler = Recorder([])
    consumer = await consume(broker, handler)
    sent = envelope()
    await broker.publish(sent, EXCHANGE, ROUTING_KEY)

    await asyncio.wait_for(handler.done.wait(), 10)
    await consumer.stop()
    assert [e.message_id for e in handler.handled] == [sent.message_id]
    assert handler.handled[0].open() == sent.open()
    assert await drain(amqp, QUEUE, settle_s=0.5) == []


async def test_transient_failure_is_retried_with_growing_backoff(broker, amqp):
    handler = Recorder([TransientError("exchange timeout"), ConnectionError("db down"),
                        TransientError("still down")])
    consumer = await consume(broker, handler)
    await broker.publish(envelope(), EXCHANGE, ROUTING_KEY)

    await asyncio.wait_for(handler.done.wait(), 10)
    await consumer.stop()
    gaps = [b - a for a, b in zip(handler.calls, handler.calls[1:], strict=False)]
    assert len(handler.handled) == 1 and len(gaps) == 3
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4
    assert await drain(amqp, QUEUE + ".dlq", settle_s=0.5) == []


async def test_a_bug_is_redelivered_and_can_then_succeed(broker, amqp):
    handler = Recorder([ValueError("flaky")])
    consumer = await consume(broker, handler)
    await broker.publish(envelope(), EXCHANGE, ROUTING_KEY)

    await asyncio.wait_for(handler.done.wait(), 10)
    await consumer.stop()
    assert len(handler.calls) == 2 and len(handler.handled) == 1
    assert await drain(amqp, QUEUE + ".dlq", settle_s=0.5) == []


async def test_a_message_failing_every_delivery_lands_in_its_dlq_with_the_reason(broker, amqp):
    handler = Recorder([ValueError(f"boom {i}") for i in range(10)])
    consumer = await consume(broker, handler)
    sent = envelope()
    await broker.publish(sent, EXCHANGE, ROUTING_KEY)

    [dead] = await drain(amqp, QUEUE + ".dlq", expect=1, timeout_s=20)
    await consumer.stop()
    assert len(handler.calls) == topology.DELIVERY_LIMIT
    assert dead.headers[REASON_HEADER] == "ValueError: boom 4"
    assert dead.headers[ATTEMPTS_HEADER] == topology.DELIVERY_LIMIT
    assert dead.message_id == sent.message_id and dead.body == sent.to_json()
    assert await drain(amqp, QUEUE, settle_s=0.5) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "invalid: bad envelope"),
        (Envelope(type="order.teleported", correlation_id="c", producer="x",
                  payload={}).to_json(), "invalid: unknown message type 'order.teleported'"),
        (envelope().model_copy(update={"version": 9}).to_json(), "invalid: signal.received "
         "version 9 is newer"),
        (envelope().model_copy(update={"payload": {"signal": {"symbol": 1}}}).to_json(),
         "invalid: bad signal.received payload"),
    ],
    ids=["not-json", "unknown-type", "newer-version", "bad-payload"],
)
async def test_a_permanently_invalid_message_goes_to_the_dlq_at_once(broker, amqp, body, reason):
    handler = Recorder([])
    consumer = await consume(broker, handler)
    await broker.publish_message(aio_pika.Message(body=body), EXCHANGE, ROUTING_KEY)

    [dead] = await drain(amqp, QUEUE + ".dlq", expect=1)
    await consumer.stop()
    assert handler.calls == []
    assert dead.headers[REASON_HEADER].startswith(reason)
    assert dead.headers[ATTEMPTS_HEADER] == 1
