"""The message envelope (messaging.md, "Envelope") and the signal payloads."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.contracts import (
    Action,
    Decision,
    Envelope,
    InvalidMessageError,
    Reason,
    ReasonCode,
    Scores,
    Signal,
    SignalAnalyzed,
    SignalReceived,
    Sizing,
    parse_envelope,
)

ENVELOPE_FIELDS = {
    "type", "version", "message_id", "correlation_id", "causation_id", "produced_at",
    "producer", "payload",
}
SIGNAL_ID = "6f1c2b8e-2d0b-5b1e-9a53-0f3c1c9d7a10"


def make_signal(**overrides: Any) -> Signal:
    fields: dict[str, Any] = {
        "signal_id": SIGNAL_ID, "symbol": "BTCUSDT", "action": Action.LONG, "price": 43123.5,
        "confidence": 0.8, "rsi": 55.0, "macd": -1.5, "volume": 12.5, "strategy": "tradingview",
        "timeframe": "1h", "alert_id": "tv-42",
        "sent_at": datetime(2026, 11, 20, 11, 59, 59, tzinfo=UTC),
        "received_at": datetime(2026, 11, 20, 12, 0, 0, 123000, tzinfo=UTC),
    }
    return Signal(**{**fields, **overrides})


def make_analyzed() -> SignalAnalyzed:
    return SignalAnalyzed(
        signal=make_signal(),
        decision=Decision.EXECUTE,
        reasons=[Reason(code=ReasonCode.NO_EDGE, value=0.1, limit=0.2, message="m")],
        scores=Scores(technical=0.7, phoenix=0.6, market=0.5, composite=0.62, phoenix95=0.9,
                      final_confidence=0.88),
        sizing=Sizing(win_rate=0.55, payoff_ratio=None, kelly=0.1, margin_fraction=0.02),
        leverage=20,
        entry_price=43123.5,
        stop_loss=42261.0,
        take_profit=43986.0,
    )


def wrapped(payload: Any = None, **kwargs: Any) -> Envelope:
    return Envelope.wrap(
        payload if payload is not None else SignalReceived(signal=make_signal()),
        producer=kwargs.pop("producer", "brain"),
        correlation_id=kwargs.pop("correlation_id", SIGNAL_ID),
        **kwargs,
    )


def test_the_json_body_has_exactly_the_fields_of_the_spec() -> None:
    body = json.loads(wrapped(causation_id="cause-1").to_json().decode("utf-8"))
    assert set(body) == ENVELOPE_FIELDS
    assert body["type"] == "signal.received"
    assert body["version"] == 1
    assert body["correlation_id"] == SIGNAL_ID
    assert body["causation_id"] == "cause-1"
    assert body["producer"] == "brain"
    assert isinstance(body["payload"], dict)
    uuid.UUID(body["message_id"])
    produced_at = datetime.fromisoformat(body["produced_at"].replace("Z", "+00:00"))
    assert produced_at.tzinfo is not None


@pytest.mark.parametrize(
    "payload", [SignalReceived(signal=make_signal()), make_analyzed()], ids=["received", "analyzed"]
)
def test_json_round_trip_keeps_every_field(payload: Any) -> None:
    envelope = wrapped(payload, causation_id="cause-1", message_id="msg-1")
    back = parse_envelope(envelope.to_json())
    assert back == envelope
    assert back.type == payload.message_type
    assert back.version == payload.version
    assert back.message_id == "msg-1"
    assert back.correlation_id == SIGNAL_ID
    assert back.causation_id == "cause-1"
    assert back.producer == "brain"
    assert back.produced_at == envelope.produced_at
    assert back.produced_at.tzinfo is not None


def test_causation_id_may_be_absent() -> None:
    back = parse_envelope(wrapped().to_json())
    assert back.causation_id is None


def test_each_wrap_gets_a_new_message_id() -> None:
    first, second = wrapped(), wrapped()
    assert first.message_id != second.message_id
    uuid.UUID(first.message_id)


@pytest.mark.parametrize(
    "payload", [SignalReceived(signal=make_signal()), make_analyzed()], ids=["received", "analyzed"]
)
def test_open_gives_the_typed_payload(payload: Any) -> None:
    opened = parse_envelope(wrapped(payload).to_json()).open()
    assert type(opened) is type(payload)
    assert opened == payload


def test_open_restores_nested_types() -> None:
    opened = parse_envelope(wrapped(make_analyzed()).to_json()).open()
    assert isinstance(opened, SignalAnalyzed)
    assert opened.signal.action is Action.LONG
    assert opened.decision is Decision.EXECUTE
    assert opened.reasons[0].code is ReasonCode.NO_EDGE
    assert opened.signal.received_at == datetime(2026, 11, 20, 12, 0, 0, 123000, tzinfo=UTC)
    assert opened.sizing is not None and opened.sizing.payoff_ratio is None


def test_the_message_types_of_the_signal_payloads() -> None:
    assert wrapped(SignalReceived(signal=make_signal())).type == "signal.received"
    assert wrapped(make_analyzed()).type == "signal.analyzed"


def _body(**changes: Any) -> bytes:
    body = json.loads(wrapped().to_json())
    body.update(changes)
    return json.dumps(body).encode()


@pytest.mark.parametrize("message_type", ["signal.unknown", "order.placed.v9", ""])
def test_an_unknown_type_cannot_be_opened(message_type: str) -> None:
    envelope = parse_envelope(_body(type=message_type))
    with pytest.raises(InvalidMessageError):
        envelope.open()


@pytest.mark.parametrize("version", [2, 99])
def test_a_newer_version_cannot_be_opened(version: int) -> None:
    envelope = parse_envelope(_body(version=version))
    with pytest.raises(InvalidMessageError):
        envelope.open()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"signal": {}},
        {"signal": "BTCUSDT"},
        {"signal": {**make_signal().model_dump(mode="json"), "price": "not a price"}},
        {"signal": {**make_signal().model_dump(mode="json"), "action": "hold"}},
    ],
)
def test_a_bad_payload_cannot_be_opened(payload: dict[str, Any]) -> None:
    envelope = parse_envelope(_body(payload=payload))
    with pytest.raises(InvalidMessageError):
        envelope.open()


def test_a_bad_analyzed_payload_cannot_be_opened() -> None:
    payload = make_analyzed().model_dump(mode="json")
    payload["decision"] = "MAYBE"
    envelope = parse_envelope(_body(type="signal.analyzed", payload=payload))
    with pytest.raises(InvalidMessageError):
        envelope.open()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b"\xff\xfe",
        b"[]",
        b"null",
        b"42",
        b"{}",
    ],
)
def test_bad_json_is_an_invalid_message(body: bytes) -> None:
    with pytest.raises(InvalidMessageError):
        parse_envelope(body)


@pytest.mark.parametrize(
    "missing", ["type", "correlation_id", "producer", "payload"]
)
def test_an_envelope_missing_a_required_field_is_an_invalid_message(missing: str) -> None:
    body = json.loads(wrapped().to_json())
    del body[missing]
    with pytest.raises(InvalidMessageError):
        parse_envelope(json.dumps(body).encode())


@pytest.mark.parametrize(
    "changes",
    [{"payload": "a string"}, {"payload": [1, 2]}, {"version": "one"}, {"produced_at": "never"}],
)
def test_an_envelope_with_a_wrongly_typed_field_is_an_invalid_message(
    changes: dict[str, Any],
) -> None:
    with pytest.raises(InvalidMessageError):
        parse_envelope(_body(**changes))
