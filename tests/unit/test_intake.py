"""TradingView alert intake: the field rules of brain.md ("Webhook contract", "Idempotency")."""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.brain.intake import (
    Alert,
    idempotency_key,
    normalise_symbol,
    signal_id_for,
    stored_key,
)
from shared.contracts import Action

BASE: dict[str, Any] = {"symbol": "BTCUSDT", "action": "buy", "price": 43123.5}


def alert(**fields: Any) -> Alert:
    """An alert built from BASE, with `fields` replacing or adding (None removes a field)."""
    merged = {**BASE, **fields}
    return Alert(**{k: v for k, v in merged.items() if v is not None})


def refused(**fields: Any) -> None:
    with pytest.raises(ValidationError):
        alert(**fields)


# --- symbol -------------------------------------------------------------------------------

SPEC_SYMBOL_FORMS = ["BTCUSDT", "btcusdt", "BTCUSDT.P", "BINANCE:BTCUSDT.P", "BTC/USDT:USDT"]


@pytest.mark.parametrize("raw", SPEC_SYMBOL_FORMS)
def test_every_symbol_form_of_the_spec_normalises_to_btcusdt(raw: str) -> None:
    assert normalise_symbol(raw) == "BTCUSDT"
    assert alert(symbol=raw).symbol == "BTCUSDT"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ethusdt", "ETHUSDT"),
        ("BINANCE:ETHUSDT.P", "ETHUSDT"),
        ("ETH/USDT:USDT", "ETHUSDT"),
        ("  BTCUSDT  ", "BTCUSDT"),
    ],
)
def test_other_symbols_normalise_the_same_way(raw: str, expected: str) -> None:
    assert normalise_symbol(raw) == expected


@pytest.mark.parametrize(
    "garbage",
    ["", "   ", "B", "BTC USDT", "BTC-USDT", "BTCUSDT!", "💥", "BINANCE:", ".P", "A" * 200],
)
def test_garbage_symbols_are_refused(garbage: str) -> None:
    with pytest.raises(ValueError):
        normalise_symbol(garbage)
    refused(symbol=garbage)


@pytest.mark.parametrize("not_a_string", [123, 1.5, True, ["BTCUSDT"], {"s": "BTCUSDT"}])
def test_a_symbol_that_is_not_a_string_is_refused(not_a_string: Any) -> None:
    refused(symbol=not_a_string)


def test_symbol_is_required() -> None:
    with pytest.raises(ValidationError):
        Alert(action="buy", price=1)


# --- action -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("buy", Action.LONG),
        ("BUY", Action.LONG),
        ("Buy", Action.LONG),
        ("long", Action.LONG),
        ("LONG", Action.LONG),
        ("sell", Action.SHORT),
        ("SELL", Action.SHORT),
        ("short", Action.SHORT),
        ("Short", Action.SHORT),
        ("close", Action.CLOSE),
        ("CLOSE", Action.CLOSE),
        ("exit", Action.CLOSE),
        ("Exit", Action.CLOSE),
        ("flat", Action.CLOSE),
        ("FLAT", Action.CLOSE),
    ],
)
def test_action_synonyms_are_case_insensitive(raw: str, expected: Action) -> None:
    assert alert(action=raw).action is expected


@pytest.mark.parametrize("bad", ["", "hold", "buyy", "open", "long short", 1, True, None])
def test_unknown_actions_are_refused(bad: Any) -> None:
    with pytest.raises(ValidationError):
        Alert(symbol="BTCUSDT", action=bad, price=1)


# --- price --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (43123.5, 43123.5),
        (43123, 43123.0),
        ("43123.5", 43123.5),
        (" 43123.5 ", 43123.5),
        ("43123", 43123.0),
        ("0.00001", 0.00001),
        ("1e3", 1000.0),
    ],
)
def test_price_is_a_number_or_a_numeric_string(raw: Any, expected: float) -> None:
    assert float(alert(price=raw).price) == expected


@pytest.mark.parametrize(
    "bad",
    [
        0, -1, -0.01, "0", "-5",
        math.nan, math.inf, -math.inf, "nan", "NaN", "inf", "-inf", "Infinity", "1e400",
        "abc", "", "43,123.5", "$43123", True, False, None, [43123.5], {"v": 1},
    ],
)
def test_price_must_be_finite_positive_and_numeric(bad: Any) -> None:
    with pytest.raises(ValidationError):
        Alert(symbol="BTCUSDT", action="buy", price=bad)


def test_price_is_required() -> None:
    with pytest.raises(ValidationError):
        Alert(symbol="BTCUSDT", action="buy")


# --- confidence, rsi, macd, volume --------------------------------------------------------


def test_confidence_defaults_to_0_8() -> None:
    assert alert().confidence == 0.8


@pytest.mark.parametrize("ok", [0, 0.0, 0.5, 1, 1.0])
def test_confidence_accepts_0_to_1(ok: float) -> None:
    assert alert(confidence=ok).confidence == ok


@pytest.mark.parametrize("bad", [-0.01, 1.01, 2, 80, math.nan, math.inf, "high", True])
def test_confidence_outside_0_to_1_is_refused(bad: Any) -> None:
    refused(confidence=bad)


def test_rsi_is_optional() -> None:
    assert alert().rsi is None


@pytest.mark.parametrize("ok", [0, 30.5, 100])
def test_rsi_accepts_0_to_100(ok: float) -> None:
    assert alert(rsi=ok).rsi == ok


@pytest.mark.parametrize("bad", [-0.1, 100.1, 1000, math.nan, math.inf, "abc", True])
def test_rsi_outside_0_to_100_is_refused(bad: Any) -> None:
    refused(rsi=bad)


@pytest.mark.parametrize("ok", [-12.5, 0, 3.25])
def test_macd_may_be_any_finite_number(ok: float) -> None:
    assert alert(macd=ok).macd == ok


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "abc", True])
def test_macd_must_be_finite(bad: Any) -> None:
    refused(macd=bad)


@pytest.mark.parametrize("ok", [0, 0.0, 12.5, 1_000_000])
def test_volume_accepts_zero_and_more(ok: float) -> None:
    assert alert(volume=ok).volume == ok


@pytest.mark.parametrize("bad", [-0.001, -1, math.nan, math.inf, "lots", True])
def test_negative_or_non_finite_volume_is_refused(bad: Any) -> None:
    refused(volume=bad)


# --- strategy, timeframe, alert_id --------------------------------------------------------


def test_strategy_defaults_to_tradingview() -> None:
    assert alert().strategy == "tradingview"


@pytest.mark.parametrize("ok", ["s", "ema-cross", "x" * 64])
def test_strategy_up_to_64_characters(ok: str) -> None:
    assert alert(strategy=ok).strategy == ok


@pytest.mark.parametrize("bad", ["x" * 65, "x" * 1000])
def test_strategy_over_64_characters_is_refused(bad: str) -> None:
    refused(strategy=bad)


def test_timeframe_is_optional() -> None:
    assert alert().timeframe is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1m", "1m"),
        ("5m", "5m"),
        ("15m", "15m"),
        ("30m", "30m"),
        ("1h", "1h"),
        ("4h", "4h"),
        ("1d", "1d"),
        ("1H", "1h"),
        ("1D", "1d"),
        ("1", "1m"),
        ("5", "5m"),
        ("15", "15m"),
        ("60", "1h"),
        ("240", "4h"),
        ("D", "1d"),
        ("d", "1d"),
    ],
)
def test_timeframe_forms_are_normalised(raw: str, expected: str) -> None:
    assert alert(timeframe=raw).timeframe == expected


@pytest.mark.parametrize("bad", ["", "7m", "0", "61", "1y", "banana", "4 hours", "m"])
def test_unknown_timeframes_are_refused(bad: str) -> None:
    refused(timeframe=bad)


def test_alert_id_is_optional() -> None:
    assert alert().alert_id is None


@pytest.mark.parametrize("ok", ["a", "tv-123", "x" * 128])
def test_alert_id_up_to_128_characters(ok: str) -> None:
    assert alert(alert_id=ok).alert_id == ok


@pytest.mark.parametrize("bad", ["x" * 129, "x" * 5000])
def test_alert_id_over_128_characters_is_refused(bad: str) -> None:
    refused(alert_id=bad)


# --- sent_at ------------------------------------------------------------------------------

NOON = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
NOON_MS = int(NOON.timestamp() * 1000)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-20T12:00:00Z", NOON),
        ("2026-11-20T12:00:00+00:00", NOON),
        ("2026-11-20T13:00:00+01:00", NOON),
        ("2026-11-20T12:00:00.123Z", NOON + timedelta(milliseconds=123)),
        (NOON_MS, NOON),
        (NOON_MS + 123, NOON + timedelta(milliseconds=123)),
        (str(NOON_MS), NOON),
        (float(NOON_MS), NOON),
    ],
)
def test_sent_at_is_iso_8601_or_epoch_milliseconds(raw: Any, expected: datetime) -> None:
    sent_at = alert(sent_at=raw).sent_at
    assert sent_at is not None
    assert sent_at.tzinfo is not None
    assert sent_at == expected


def test_sent_at_is_optional() -> None:
    assert alert().sent_at is None


@pytest.mark.parametrize(
    "bad", ["yesterday", "2026-13-45T00:00:00Z", "12:00", "", "-5", True, [NOON_MS], -1],
)
def test_unreadable_sent_at_is_refused(bad: Any) -> None:
    refused(sent_at=bad)


# --- unknown fields -----------------------------------------------------------------------


def test_unknown_fields_are_ignored() -> None:
    parsed = Alert(**BASE, secret="s3cret", exchange="BINANCE", comment={"nested": [1, 2]})
    assert parsed.symbol == "BTCUSDT"
    dumped = parsed.model_dump()
    assert "secret" not in dumped
    assert "exchange" not in dumped
    assert "comment" not in dumped


def test_a_full_tradingview_alert_parses() -> None:
    parsed = Alert(
        symbol="BINANCE:BTCUSDT.P", action="Buy", price="43123.5", confidence=0.9, rsi=55.5,
        macd=-1.5, volume="123.4", strategy="ema", timeframe="240", alert_id="a-1",
        sent_at="2026-11-20T12:00:00Z",
    )
    assert (parsed.symbol, parsed.action, parsed.price) == ("BTCUSDT", Action.LONG, 43123.5)
    assert (parsed.confidence, parsed.rsi, parsed.macd, parsed.volume) == (0.9, 55.5, -1.5, 123.4)
    assert (parsed.strategy, parsed.timeframe, parsed.alert_id) == ("ema", "4h", "a-1")
    assert parsed.sent_at == NOON


# --- idempotency --------------------------------------------------------------------------


def test_alert_id_is_the_key_and_is_durable() -> None:
    key = idempotency_key(alert(alert_id="tv-42"))
    assert "tv-42" in key.key
    assert key.durable is True


def test_alert_id_wins_over_every_other_field() -> None:
    first = idempotency_key(alert(alert_id="tv-42"))
    other = idempotency_key(
        alert(alert_id="tv-42", symbol="ETHUSDT", action="sell", price=2000, strategy="x",
              timeframe="1h", sent_at=NOON_MS)
    )
    assert other == first


def test_different_alert_ids_give_different_keys() -> None:
    first = idempotency_key(alert(alert_id="tv-1"))
    assert idempotency_key(alert(alert_id="tv-2")).key != first.key


def test_without_alert_id_the_key_is_a_sha256_and_windowed() -> None:
    key = idempotency_key(alert())
    assert re.search(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])", key.key)
    assert key.durable is False


@pytest.mark.parametrize(
    "variant",
    [
        {"symbol": "btcusdt"},
        {"symbol": "BTCUSDT.P"},
        {"symbol": "BINANCE:BTCUSDT.P"},
        {"symbol": "BTC/USDT:USDT"},
        {"action": "LONG"},
        {"action": "Buy"},
        {"price": "43123.5"},
        {"price": " 43123.50 "},
        {"timeframe": "60"},
        {"confidence": 0.3, "rsi": 70, "macd": 1.0, "volume": 5},
        {"comment": "ignored field"},
    ],
)
def test_the_same_alert_written_differently_gives_the_same_key(variant: dict[str, Any]) -> None:
    reference = idempotency_key(alert(timeframe="1h"))
    assert idempotency_key(alert(**{"timeframe": "1h", **variant})) == reference


@pytest.mark.parametrize(
    "variant",
    [
        {"price": 43123.6},
        {"price": "43123.4"},
        {"symbol": "ETHUSDT"},
        {"action": "sell"},
        {"action": "close"},
        {"strategy": "other"},
        {"timeframe": "4h"},
        {"timeframe": None},
        {"sent_at": NOON_MS},
    ],
)
def test_a_different_key_field_gives_a_different_key(variant: dict[str, Any]) -> None:
    reference = idempotency_key(alert(timeframe="1h"))
    assert idempotency_key(alert(**{"timeframe": "1h", **variant})).key != reference.key


def test_integer_and_string_prices_give_the_same_key() -> None:
    assert idempotency_key(alert(price=43123)) == idempotency_key(alert(price="43123.0"))


def test_sent_at_makes_the_key_durable() -> None:
    assert idempotency_key(alert(sent_at="2026-11-20T12:00:00Z")).durable is True


@pytest.mark.parametrize(
    "form", ["2026-11-20T12:00:00Z", "2026-11-20T12:00:00+00:00", NOON_MS, str(NOON_MS)]
)
def test_sent_at_forms_of_the_same_instant_give_the_same_key(form: Any) -> None:
    reference = idempotency_key(alert(sent_at="2026-11-20T12:00:00Z"))
    assert idempotency_key(alert(sent_at=form)) == reference


def test_sent_at_with_a_utc_offset_is_normalised_before_hashing() -> None:
    """brain.md hashes the *normalised* sent_at: 13:00+01:00 is the same instant as 12:00Z."""
    utc = idempotency_key(alert(sent_at="2026-11-20T12:00:00Z"))
    offset = idempotency_key(alert(sent_at="2026-11-20T13:00:00+01:00"))
    assert offset == utc


def test_a_different_sent_at_gives_a_different_key() -> None:
    first = idempotency_key(alert(sent_at=NOON_MS))
    assert idempotency_key(alert(sent_at=NOON_MS + 60_000)).key != first.key


# --- stored_key and signal_id_for ---------------------------------------------------------


@pytest.mark.parametrize(
    "fields", [{"alert_id": "tv-42"}, {"sent_at": "2026-11-20T12:00:00Z"}]
)
def test_a_durable_key_recurs_only_after_its_24_hour_claim(fields: dict[str, Any]) -> None:
    """TradingView's {{strategy.order.id}} repeats ("Long", "Short"): a reused alert_id is a
    new signal once its 24 h claim has passed, never a duplicate forever."""
    key = idempotency_key(alert(**fields))
    assert key.durable and key.claim_s(60) == 24 * 3600
    day = datetime.fromtimestamp(1_800_000_000 // 86_400 * 86_400, UTC)  # a day boundary
    first = stored_key(key, day, key.claim_s(60))
    assert first.startswith(key.key)
    assert stored_key(key, day + timedelta(hours=23, minutes=59), key.claim_s(60)) == first
    assert stored_key(key, day + timedelta(hours=24), key.claim_s(60)) != first


def test_stored_key_of_a_windowed_key_includes_the_window_bucket() -> None:
    key = idempotency_key(alert())
    assert not key.durable and key.claim_s(60) == 60
    start = datetime.fromtimestamp(1_800_000_000 // 60 * 60, UTC)  # a window boundary
    in_window = stored_key(key, start, 60)
    assert in_window.startswith(key.key)
    assert in_window != key.key
    assert stored_key(key, start + timedelta(seconds=59), 60) == in_window
    assert stored_key(key, start + timedelta(seconds=60), 60) != in_window
    assert stored_key(key, start - timedelta(seconds=1), 60) != in_window


def test_stored_key_bucket_follows_the_window_length() -> None:
    key = idempotency_key(alert())
    start = datetime.fromtimestamp(1_800_000_000 // 300 * 300, UTC)
    assert stored_key(key, start + timedelta(seconds=299), 300) == stored_key(key, start, 300)
    assert stored_key(key, start + timedelta(seconds=299), 60) != stored_key(key, start, 60)


def test_signal_id_is_a_deterministic_uuid() -> None:
    first = signal_id_for("alert:tv-42")
    assert signal_id_for("alert:tv-42") == first
    assert str(uuid.UUID(first)) == first
    assert signal_id_for("alert:tv-43") != first


def test_signal_id_follows_the_stored_key() -> None:
    key = idempotency_key(alert())
    start = datetime.fromtimestamp(1_800_000_000 // 60 * 60, UTC)
    same = signal_id_for(stored_key(key, start + timedelta(seconds=30), 60))
    assert signal_id_for(stored_key(key, start, 60)) == same
    assert signal_id_for(stored_key(key, start + timedelta(seconds=60), 60)) != same
