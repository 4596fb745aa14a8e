"""JSON log lines (operations.md, "Logging") with secrets masked ("Configuration")."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog

from shared.observability.logging import bind_correlation_id, configure_logging, get_logger

SIGNAL_ID = "0b7e5a4c-95a1-5c1b-9d2f-70e1f3b05e95"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    others = {
        name: logging.getLogger(name).level for name in ("aiormq", "aio_pika", "uvicorn.access")
    }
    structlog_config = structlog.get_config()
    structlog.contextvars.clear_contextvars()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, other_level in others.items():
        logging.getLogger(name).setLevel(other_level)
    structlog.reset_defaults()
    structlog.configure(**structlog_config)
    structlog.contextvars.clear_contextvars()


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.strip()]


def records(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(capsys)]


def only_record(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    found = records(capsys)
    assert len(found) == 1, found
    return found[0]


# --- the JSON line ------------------------------------------------------------------------


def test_a_line_has_time_level_service_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("brain")
    get_logger("test").info("signal accepted")
    record = only_record(capsys)
    assert record["message"] == "signal accepted"
    assert record["level"] == "info"
    assert record["service"] == "brain"
    time = datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
    assert time.tzinfo is not None
    assert time.utcoffset() is not None and time.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(("method", "level"), [("warning", "warning"), ("error", "error")])
def test_the_level_is_named(
    capsys: pytest.CaptureFixture[str], method: str, level: str
) -> None:
    configure_logging("risk")
    getattr(get_logger("test"), method)("something")
    record = only_record(capsys)
    assert record["level"] == level
    assert record["service"] == "risk"


def test_the_correlation_id_is_on_every_line_while_bound(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("brain")
    log = get_logger("test")
    with bind_correlation_id(correlation_id=SIGNAL_ID):
        log.info("first")
        logging.getLogger("uvicorn.error").warning("second")
    first, second = records(capsys)
    assert first["correlation_id"] == SIGNAL_ID
    assert second["correlation_id"] == SIGNAL_ID


def test_the_correlation_id_does_not_outlive_its_binding(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("brain")
    log = get_logger("test")
    with bind_correlation_id(correlation_id=SIGNAL_ID):
        log.info("inside")
    log.info("outside")
    inside, outside = records(capsys)
    assert inside["correlation_id"] == SIGNAL_ID
    assert outside.get("correlation_id") != SIGNAL_ID


def test_the_events_key_fields_are_on_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("brain")
    get_logger("test").info("decided", symbol="BTCUSDT", decision="EXECUTE", score=0.91)
    record = only_record(capsys)
    assert (record["symbol"], record["decision"], record["score"]) == ("BTCUSDT", "EXECUTE", 0.91)


def test_standard_library_logs_are_json_lines_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("execute")
    logging.getLogger("aio_pika.robust_connection").warning("reconnecting in %s s", 5)
    record = only_record(capsys)
    assert record["message"] == "reconnecting in 5 s"
    assert record["level"] == "warning"
    assert record["service"] == "execute"
    assert "time" in record


def test_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("brain")
    log = get_logger("test")
    for n in range(3):
        log.info("event", n=n, text="multi\nline")
    found = records(capsys)
    assert [r["n"] for r in found] == [0, 1, 2]
    assert all(r["text"] == "multi\nline" for r in found)


def test_the_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("brain", level="WARNING")
    log = get_logger("test")
    log.info("hidden")
    log.warning("shown")
    assert [r["message"] for r in records(capsys)] == ["shown"]


def test_console_format_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("brain", fmt="console")
    get_logger("test").info("for humans", symbol="BTCUSDT")
    (line,) = lines(capsys)
    assert "for humans" in line
    assert "BTCUSDT" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


# --- secrets ------------------------------------------------------------------------------

API_KEY = "pk_live_4f9a8b7c6d5e"
AMQP_URL = "amqp://trader:Rabb1tPassw0rd@broker:5672/"
AMQP_PASSWORD = "Rabb1tPassw0rd"


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def assert_not_leaked(out: str, secret: str) -> None:
    assert secret not in out
    for line in out.splitlines():
        if line.strip():
            for text in strings_in(json.loads(line)):
                assert secret not in text, text


@pytest.mark.parametrize(
    "emit",
    [
        lambda log, s: log.info(f"key is {s}"),
        lambda log, s: log.info("auth", api_key=s),
        lambda log, s: log.info("auth", headers={"X-API-Key": s}),
        lambda log, s: logging.getLogger("uvicorn.error").error("bad key %s", s),
        lambda log, s: logging.getLogger("uvicorn.error").error(f"bad key {s}"),
    ],
    ids=["message", "field", "nested-field", "stdlib-arg", "stdlib-message"],
)
def test_a_secret_never_appears_in_the_output(
    capsys: pytest.CaptureFixture[str], emit: Any
) -> None:
    configure_logging("brain", secrets=[API_KEY])
    emit(get_logger("test"), API_KEY)
    out = capsys.readouterr().out
    assert out.strip(), "nothing was logged"
    assert_not_leaked(out, API_KEY)
    assert "***" in out


def test_a_secret_in_an_exception_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("brain", secrets=[API_KEY])
    try:
        raise RuntimeError(f"login failed with {API_KEY}")
    except RuntimeError:
        get_logger("test").exception("call failed")
    out = capsys.readouterr().out
    assert "login failed" in out
    assert_not_leaked(out, API_KEY)


def test_a_url_and_its_password_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("brain", secrets=[AMQP_URL, AMQP_PASSWORD])
    log = get_logger("test")
    log.info("connecting", url=AMQP_URL)
    logging.getLogger("aiormq").error("ACCESS_REFUSED for password %s", AMQP_PASSWORD)
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 2
    assert_not_leaked(out, AMQP_PASSWORD)
    assert_not_leaked(out, AMQP_URL)


def test_the_rest_of_the_line_survives_masking(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("brain", secrets=[API_KEY])
    with bind_correlation_id(correlation_id=SIGNAL_ID):
        get_logger("test").info("auth failed", api_key=API_KEY, symbol="BTCUSDT")
    record = only_record(capsys)
    assert record["api_key"] != API_KEY
    assert record["symbol"] == "BTCUSDT"
    assert record["correlation_id"] == SIGNAL_ID
    assert record["message"] == "auth failed"


@pytest.mark.parametrize(
    "secret",
    ['pa"ss-w0rd-42', "back\\slash-pw-42", "pässwörd-42"],
    ids=["double-quote", "backslash", "non-ascii"],
)
def test_a_secret_with_characters_json_escapes_is_masked_too(
    capsys: pytest.CaptureFixture[str], secret: str
) -> None:
    configure_logging("brain", secrets=[secret])
    get_logger("test").info("login", password=secret)
    get_logger("test").info(f"login with {secret}")
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 2
    assert_not_leaked(out, secret)
