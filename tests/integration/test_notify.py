"""NOTIFY through the real python-telegram-bot against a local imitation of the Bot API."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from itertools import pairwise

from structlog.testing import capture_logs

from services.notify import consumers
from shared.contracts import (
    AccountUpdated,
    Action,
    Envelope,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    Reason,
    ReasonCode,
    Signal,
    TradeRejected,
    Verdict,
)
from shared.messaging import topology
from tests.fakes.telegram import FakeTelegram, SentMessage
from tests.integration.conftest import API_KEY
from tests.integration.notify_fixtures import CHAT, told


def opened(position_id: str = "p-1", symbol: str = "BTCUSDT",
           quantity: float = 0.092) -> PositionOpened:
    return PositionOpened(
        position_id=position_id, signal_id="s-1", symbol=symbol, side="long",
        quantity=quantity, entry_price=43132.1, margin=198.4, leverage=20, stop_loss=42261.0,
        take_profit=43986.0, liquidation_price=41131.9, opened_at=datetime.now(UTC))


def closed() -> PositionClosed:
    return PositionClosed(
        position_id="p-1", symbol="BTCUSDT", side="long", quantity=0.092, entry_price=43132.1,
        exit_price=43977.2, realized_pnl=74.55, roe=0.3758, reason="take_profit",
        closed_at=datetime.now(UTC))


def rejected(message: str = "PEPEUSDT is not in ALLOWED_SYMBOLS") -> TradeRejected:
    signal = Signal(signal_id="s-2", symbol="PEPEUSDT", action=Action.LONG, price=0.00001,
                    confidence=0.9, strategy="t", received_at=datetime.now(UTC))
    verdict = Verdict(approved=False, stage_failed=1, reasons=[Reason(
        code=ReasonCode.SYMBOL_NOT_ALLOWED, message=message)])
    return TradeRejected(signal=signal, verdict=verdict, decided_at=datetime.now(UTC))


async def publish(broker, payload, exchange: str, routing_key: str) -> Envelope:
    envelope = Envelope.wrap(payload, producer="test", correlation_id="c")
    await broker.publish(envelope, exchange, routing_key)
    return envelope


def numbered(i: int) -> tuple[PositionOpened | TradeRejected, str, str]:
    """Event `i` of a series, both kinds on `notify_events`: a position opened (qty 1000+i)
    or a rejection ("event #i"), alternately."""
    if i % 2:
        return rejected(f"event #{i}"), topology.RISK_MANAGEMENT.name, "trade.rejected"
    return (opened(f"p-{i}", quantity=1000 + i), topology.TRADING_EXECUTION.name,
            "position.opened.BTCUSDT")


def number(text: str) -> int:
    """Which event of the series a text tells."""
    match = re.search(r"event #(\d+)", text)
    if match:
        return int(match.group(1))
    match = re.search(r"qty (\d+)", text)
    assert match, text
    return int(match.group(1)) - 1000


async def publish_numbered(broker, numbers) -> list[tuple[Envelope, str, str]]:
    published = []
    for i in numbers:
        payload, exchange, routing_key = numbered(i)
        published.append((await publish(broker, payload, exchange, routing_key), exchange,
                          routing_key))
    return published


def events(sent: list[SentMessage]) -> list[str]:
    """What the chat was told, one plain text per event: digests taken apart."""
    return [text for message in sent for text in told(message)]


async def wait_events(telegram: FakeTelegram, count: int, within_s: float) -> list[str]:
    deadline = time.monotonic() + within_s
    while len(told := events(telegram.sent)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(told)} events told, {count} expected")
        await asyncio.sleep(0.1)
    return told


async def test_positions_and_rejections_reach_the_configured_chat_only(make_notify, telegram,
                                                                       broker):
    async with make_notify():
        await publish(broker, opened(), topology.TRADING_EXECUTION.name,
                      "position.opened.BTCUSDT")
        await publish(broker, closed(), topology.TRADING_EXECUTION.name,
                      "position.closed.BTCUSDT")
        await publish(broker, rejected(), topology.RISK_MANAGEMENT.name, "trade.rejected")
        told = await wait_events(telegram, 3, within_s=10)
    assert {m.chat_id for m in telegram.sent} == {CHAT}
    assert all(m.parse_mode == "HTML" for m in telegram.sent)
    first, second, third = told
    assert "BTCUSDT" in first and "43132.1" in first and "42261" in first and "41131.9" in first
    assert "take" in second.lower() and "74.55" in second
    assert "SYMBOL_NOT_ALLOWED" in third and "PEPEUSDT" in third


async def test_a_redelivered_event_is_not_sent_twice(make_notify, telegram, broker):
    async with make_notify():
        envelope = await publish(broker, opened("p-dup"), topology.TRADING_EXECUTION.name,
                                 "position.opened.BTCUSDT")
        await broker.publish(envelope, topology.TRADING_EXECUTION.name,
                             "position.opened.BTCUSDT")
        await telegram.wait_sent(1, within_s=10)
        await asyncio.sleep(1.0)
    assert len(telegram.texts(CHAT)) == 1


def position_updated() -> PositionUpdated:
    return PositionUpdated(
        position_id="p-1", symbol="BTCUSDT", side="long", quantity=0.092, entry_price=43132.1,
        margin=198.4, liquidation_price=41131.9, mark_price=43200.0, unrealized_pnl=6.25,
        updated_at=datetime.now(UTC))


def account_updated() -> AccountUpdated:
    return AccountUpdated(wallet_balance=10_000, equity=10_006.25, used_margin=198.4,
                          free_margin=9_807.85, day_start_equity=10_000, daily_pnl=0,
                          updated_at=datetime.now(UTC))


LOGGED = "telegram off; message logged"


async def test_without_a_token_each_message_is_one_log_line_and_needs_no_database(
        make_notify, broker, amqp):
    # Telegram off (no token): no chat to deliver to, nothing to record. So each message is
    # logged and acked at once, even with the database unreachable; other events say nothing.
    nowhere = "http://127.0.0.1:9"
    with capture_logs() as logs:
        async with make_notify(
                telegram_bot_token=None, execute_url=nowhere, risk_url=nowhere,
                brain_url=nowhere,
                database_url="postgresql+asyncpg://postgres@127.0.0.1:9/away") as client:
            execution = topology.TRADING_EXECUTION.name
            published = [
                await publish(broker, opened(), execution, "position.opened.BTCUSDT"),
                await publish(broker, position_updated(), execution,
                              "position.updated.BTCUSDT"),
                await publish(broker, account_updated(), execution, "account.updated"),
                await publish(broker, closed(), execution, "position.closed.BTCUSDT"),
                await publish(broker, rejected(), topology.RISK_MANAGEMENT.name,
                              "trade.rejected"),
            ]
            deadline = time.monotonic() + 10
            while sum(entry["event"] == LOGGED for entry in logs) < 3:
                assert time.monotonic() < deadline, logs
                await asyncio.sleep(0.05)
            alert = await client.post("/alert", headers={"X-API-Key": API_KEY},
                                      json={"title": "Disk full"})
            await asyncio.sleep(1.0)  # time for a line too many
        channel = await amqp.channel()
        left = await channel.declare_queue("notify_events", passive=True)
    lines = [entry for entry in logs if entry["event"] == LOGGED]
    assert [(line["log_level"], line["event_type"], line["message_id"]) for line in lines[:3]] \
        == [("info", envelope.type, envelope.message_id)
            for envelope in (published[0], published[3], published[4])]
    first, second, third, fourth = (line["text"] for line in lines)
    assert "Position opened" in first and "Position closed" in second
    assert "SYMBOL_NOT_ALLOWED" in third and "Disk full" in fourth
    assert alert.status_code == 202
    assert left.declaration_result.message_count == 0  # every event acked


async def test_retry_after_is_honoured(make_notify, telegram, broker):
    telegram.rate_limit(times=1, retry_after=2)
    async with make_notify():
        started = time.monotonic()
        await publish(broker, opened(), topology.TRADING_EXECUTION.name,
                      "position.opened.BTCUSDT")
        [message] = await telegram.wait_sent(1, within_s=15)
    assert message.at - started >= 2.0


OUTAGE_S = 30.0


async def test_telegram_down_30_s_means_every_message_after_it_is_back_in_order(
        make_notify, telegram, broker, monkeypatch):
    # Handlers give up waiting every second, so the consumer retries them in place all
    # through the outage: each must rejoin its queued message, not queue it at the back.
    monkeypatch.setattr(consumers, "DELIVERY_WAIT_S", 1.0)
    async with make_notify():
        await publish_numbered(broker, range(3))
        await wait_events(telegram, 3, within_s=10)
        before = len(telegram.sent)
        await telegram.down()
        down_at = time.monotonic()
        count = 3
        while time.monotonic() - down_at < OUTAGE_S:  # events keep coming meanwhile
            await publish_numbered(broker, [count])
            count += 1
            await asyncio.sleep(0.5)
        assert len(telegram.sent) == before
        await telegram.heal()
        healed = time.monotonic()
        await wait_events(telegram, count, within_s=30)
        await asyncio.sleep(2.0)  # time for a duplicate to show
    assert [number(text) for text in events(telegram.sent)] == list(range(count))
    # Delivery resumes within seconds: the retry backoff is capped (5 s).
    assert telegram.sent[before].at - healed < 6.0
    assert len(telegram.sent) - before < count - 3  # the backlog went out merged


async def test_a_restart_during_an_outage_loses_nothing_and_doubles_nothing(make_notify,
                                                                            telegram, broker):
    async with make_notify():
        await publish_numbered(broker, range(2))
        await wait_events(telegram, 2, within_s=10)
        await telegram.down()
        await publish_numbered(broker, range(2, 6))
        await asyncio.sleep(1.0)  # taken in, waiting for Telegram, unacked
    await telegram.heal()
    async with make_notify():
        await wait_events(telegram, 6, within_s=20)
        await asyncio.sleep(1.0)
    assert [number(text) for text in events(telegram.sent)] == list(range(6))


async def test_a_burst_of_200_events_all_arrive_in_order_merged(make_notify, telegram, broker):
    async with make_notify(telegram_min_interval_s=1.0):
        published = await publish_numbered(broker, range(200))
        await wait_events(telegram, 200, within_s=90)
        # Copies of events that went out inside digests: recorded, so not sent again.
        for envelope, exchange, routing_key in published[:3] + published[-3:]:
            await broker.publish(envelope, exchange, routing_key)
        await asyncio.sleep(2.5)
    sent = telegram.sent
    assert [number(text) for text in events(sent)] == list(range(200))
    assert len(sent) <= 20, len(sent)
    assert all(later.at - earlier.at >= 0.95 for earlier, later in pairwise(sent))


async def test_post_alert_forwards_ours_and_alertmanagers(make_notify, telegram):
    async with make_notify() as client:
        unauthorised = await client.post("/alert", json={"title": "x"})
        ours = await client.post("/alert", headers={"X-API-Key": API_KEY}, json={
            "severity": "critical", "title": "Disk full", "message": "var at 99%"})
        manager = await client.post("/alert", headers={"Authorization": f"Bearer {API_KEY}"},
                                    json={"status": "firing", "alerts": [{
                                        "status": "firing",
                                        "labels": {"alertname": "ServiceDown",
                                                   "severity": "critical", "job": "risk"},
                                        "annotations": {"summary": "RISK is down"}}]})
        bad = await client.post("/alert", headers={"X-API-Key": API_KEY},
                                json={"severity": "apocalyptic", "title": "x"})
    assert (unauthorised.status_code, ours.status_code, manager.status_code,
            bad.status_code) == (401, 202, 202, 422)
    texts = telegram.texts(CHAT)
    assert len(texts) == 2 and "Disk full" in texts[0] and "ServiceDown" in texts[1]


async def test_post_alert_while_telegram_is_down_is_refused_not_queued(make_notify, telegram):
    async with make_notify() as client:
        await telegram.down()
        started = time.monotonic()
        response = await client.post("/alert", headers={"X-API-Key": API_KEY},
                                     json={"title": "Disk full"})
        answered_in = time.monotonic() - started
        await telegram.heal()
        await asyncio.sleep(2.0)
    assert response.status_code == 503 and answered_in < 5
    assert telegram.texts(CHAT) == []  # Alertmanager retries it: it must not come twice
