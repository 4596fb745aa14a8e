"""NOTIFY through the real python-telegram-bot against a local imitation of the Bot API."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from shared.contracts import (
    Action,
    Envelope,
    PositionClosed,
    PositionOpened,
    Reason,
    ReasonCode,
    Signal,
    TradeRejected,
    Verdict,
)
from shared.messaging import topology
from tests.integration.conftest import API_KEY
from tests.integration.notify_fixtures import CHAT


def opened(position_id: str = "p-1", symbol: str = "BTCUSDT") -> PositionOpened:
    return PositionOpened(
        position_id=position_id, signal_id="s-1", symbol=symbol, side="long",
        quantity=0.092, entry_price=43132.1, margin=198.4, leverage=20, stop_loss=42261.0,
        take_profit=43986.0, liquidation_price=41131.9, opened_at=datetime.now(UTC))


def closed() -> PositionClosed:
    return PositionClosed(
        position_id="p-1", symbol="BTCUSDT", side="long", quantity=0.092, entry_price=43132.1,
        exit_price=43977.2, realized_pnl=74.55, roe=0.3758, reason="take_profit",
        closed_at=datetime.now(UTC))


def rejected() -> TradeRejected:
    signal = Signal(signal_id="s-2", symbol="PEPEUSDT", action=Action.LONG, price=0.00001,
                    confidence=0.9, strategy="t", received_at=datetime.now(UTC))
    verdict = Verdict(approved=False, stage_failed=1, reasons=[Reason(
        code=ReasonCode.SYMBOL_NOT_ALLOWED, message="PEPEUSDT is not in ALLOWED_SYMBOLS")])
    return TradeRejected(signal=signal, verdict=verdict, decided_at=datetime.now(UTC))


async def publish(broker, payload, exchange: str, routing_key: str) -> Envelope:
    envelope = Envelope.wrap(payload, producer="test", correlation_id="c")
    await broker.publish(envelope, exchange, routing_key)
    return envelope


async def test_positions_and_rejections_reach_the_configured_chat_only(make_notify, telegram,
                                                                       broker):
    async with make_notify():
        await publish(broker, opened(), topology.TRADING_EXECUTION.name,
                      "position.opened.BTCUSDT")
        await publish(broker, closed(), topology.TRADING_EXECUTION.name,
                      "position.closed.BTCUSDT")
        await publish(broker, rejected(), topology.RISK_MANAGEMENT.name, "trade.rejected")
        sent = await telegram.wait_sent(3, within_s=10)
    assert {m.chat_id for m in sent} == {CHAT}
    assert all(m.parse_mode == "HTML" for m in sent)
    first, second, third = (m.plain for m in sent)
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


async def test_retry_after_is_honoured(make_notify, telegram, broker):
    telegram.rate_limit(times=1, retry_after=2)
    async with make_notify():
        started = time.monotonic()
        await publish(broker, opened(), topology.TRADING_EXECUTION.name,
                      "position.opened.BTCUSDT")
        [message] = await telegram.wait_sent(1, within_s=15)
    assert message.at - started >= 2.0


async def test_telegram_down_means_late_delivery_in_order(make_notify, telegram, broker):
    async with make_notify():
        await telegram.down()
        symbols = ["ETHUSDT", "SOLUSDT", "ADAUSDT"]
        for i, symbol in enumerate(symbols):
            await publish(broker, opened(f"p-{i}", symbol), topology.TRADING_EXECUTION.name,
                          f"position.opened.{symbol}")
        await asyncio.sleep(3.0)
        assert telegram.texts(CHAT) == []
        await telegram.heal()
        sent = await telegram.wait_sent(3, within_s=30)
    assert [next(s for s in symbols if s in m.plain) for m in sent] == symbols


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
