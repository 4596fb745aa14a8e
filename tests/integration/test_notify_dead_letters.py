"""A dead letter anywhere in the pipeline reaches the operator's Telegram chat."""

from __future__ import annotations

import aio_pika

from shared.messaging import Consumer, topology
from tests.integration.notify_fixtures import CHAT


async def never_called(_envelope, _payload) -> None:
    raise AssertionError("an invalid message reached the handler")


async def test_an_invalid_message_dead_lettered_by_a_service_reaches_telegram(
        make_notify, telegram, broker):
    # RISK's control consumer, as RISK runs it: a body no parser accepts goes to its DLQ.
    risk_control = Consumer(broker, "risk_control", never_called, prefetch=1)
    async with make_notify():
        await risk_control.start()
        try:
            await broker.publish_message(
                aio_pika.Message(b"{not json", message_id="garbled-1", type="nonsense"),
                topology.CONTROL.name, "control.trading_state")
            [sent] = await telegram.wait_sent(1, within_s=15)
        finally:
            await risk_control.stop()
    assert sent.chat_id == CHAT
    assert "Dead letter" in sent.plain and "risk_control" in sent.plain
    assert "garbled-1" in sent.plain and "invalid" in sent.plain
