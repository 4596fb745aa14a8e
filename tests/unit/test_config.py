"""Settings (operations.md, "Configuration"; brain.md for BRAIN's own variables)."""

from __future__ import annotations

import os
from collections.abc import Callable
from ipaddress import ip_address

import pytest

from services.brain.settings import BrainSettings
from shared.config import (
    ExchangeMode,
    SecretMissingError,
    Settings,
    is_placeholder,
)

TRADINGVIEW_IPS = ["52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7"]
GOOD_KEY = "k-2f9c1d7e8a6b4c3d"
GOOD_WEBHOOK_SECRET = "wh-7b3e9a1c5d2f8e4a"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable of the developer's shell may leak into a test."""
    names = set(BrainSettings.model_fields) | set(Settings.model_fields)
    for variable in list(os.environ):
        if variable.lower() in names:
            monkeypatch.delenv(variable)


def settings(**kwargs: object) -> Settings:
    return Settings(_env_file=None, **kwargs)  # type: ignore[call-arg]


def brain(**kwargs: object) -> BrainSettings:
    return BrainSettings(_env_file=None, **kwargs)  # type: ignore[call-arg]


# --- defaults -----------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [settings, brain], ids=["Settings", "BrainSettings"])
def test_defaults_match_operations_md(factory: Callable[[], Settings]) -> None:
    s = factory()
    assert s.amqp_url.get_secret_value() == "amqp://guest:guest@localhost:5672/"
    assert s.amqp_vhost == "/trading"
    assert s.redis_url.get_secret_value() == "redis://localhost:6379/0"
    assert s.redis_prefix == "phoenix95:"
    assert s.database_url.get_secret_value() == "sqlite+aiosqlite:///./var/phoenix95.db"
    assert s.exchange_mode is ExchangeMode.PAPER
    assert s.exchange_mode == "paper"


def test_brain_defaults_match_brain_md() -> None:
    s = brain()
    assert s.brain_port == 8100
    assert s.rate_limit_per_minute == 120
    assert s.dedupe_window_s == 60
    assert s.webhook_max_body_bytes == 16 * 1024
    assert s.webhook_allowed_ips == []


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("AMQP_VHOST", "/other", "amqp_vhost", "/other"),
        ("REDIS_PREFIX", "p95test:", "redis_prefix", "p95test:"),
        ("EXCHANGE_MODE", "testnet", "exchange_mode", ExchangeMode.TESTNET),
        ("exchange_mode", "paper", "exchange_mode", ExchangeMode.PAPER),
    ],
)
def test_environment_overrides_defaults(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(settings(), field) == expected


@pytest.mark.parametrize("variable", ["DATABASE_URL", "AMQP_URL", "REDIS_URL"])
def test_urls_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "scheme://user:pw1234@host:1/x")
    assert getattr(settings(), variable.lower()).get_secret_value() == "scheme://user:pw1234@host:1/x"


def test_an_unknown_exchange_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_MODE", "yolo")
    with pytest.raises(ValueError):
        settings()


# --- comma-separated lists ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("key-one", ["key-one"]),
        ("key-one,key-two", ["key-one", "key-two"]),
        ("key-one, key-two ,key-three", ["key-one", "key-two", "key-three"]),
        ("key-one,,key-two,", ["key-one", "key-two"]),
    ],
)
def test_api_keys_are_comma_separated(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("PHOENIX95_API_KEYS", raw)
    assert [k.get_secret_value() for k in settings().phoenix95_api_keys] == expected


def test_allowed_symbols_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_SYMBOLS", "btcusdt, ETHUSDT,solusdt")
    assert settings().allowed_symbols == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def test_webhook_allowed_ips_is_a_cidr_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "WEBHOOK_ALLOWED_IPS", "52.89.214.238, 34.212.75.30/32,54.218.53.128 ,52.32.178.0/24"
    )
    networks = brain().webhook_allowed_ips
    assert len(networks) == 4
    for ip in TRADINGVIEW_IPS:
        assert any(ip_address(ip) in net for net in networks), ip
    assert not any(ip_address("10.0.0.1") in net for net in networks)
    assert not any(ip_address("52.32.179.7") in net for net in networks)


def test_trusted_proxies_is_a_cidr_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8,::1")
    proxies = brain().trusted_proxies
    assert any(ip_address("10.1.2.3") in net for net in proxies)
    assert any(ip_address("::1") in net for net in proxies)
    assert not any(ip_address("192.168.0.1") in net for net in proxies)


@pytest.mark.parametrize("bad", ["not-an-ip", "300.1.1.1", "10.0.0.0/99"])
def test_a_bad_cidr_is_refused(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("WEBHOOK_ALLOWED_IPS", bad)
    with pytest.raises(ValueError):
        brain()


# --- live mode refuses missing or placeholder secrets -------------------------------------


def test_paper_mode_starts_without_secrets() -> None:
    s = brain()
    assert s.exchange_mode is ExchangeMode.PAPER
    assert s.phoenix95_api_keys == []
    assert s.webhook_secret is None


def test_paper_mode_starts_with_placeholder_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOENIX95_API_KEYS", "change-me")
    monkeypatch.setenv("WEBHOOK_SECRET", "change-me")
    assert brain().exchange_mode is ExchangeMode.PAPER


def test_live_mode_starts_with_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_MODE", "live")
    monkeypatch.setenv("PHOENIX95_API_KEYS", GOOD_KEY)
    monkeypatch.setenv("WEBHOOK_SECRET", GOOD_WEBHOOK_SECRET)
    s = brain()
    assert s.exchange_mode is ExchangeMode.LIVE
    assert s.webhook_secret is not None
    assert s.webhook_secret.get_secret_value() == GOOD_WEBHOOK_SECRET


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WEBHOOK_SECRET": GOOD_WEBHOOK_SECRET}, "PHOENIX95_API_KEYS"),
        ({"WEBHOOK_SECRET": GOOD_WEBHOOK_SECRET, "PHOENIX95_API_KEYS": ""}, "PHOENIX95_API_KEYS"),
        ({"WEBHOOK_SECRET": GOOD_WEBHOOK_SECRET, "PHOENIX95_API_KEYS": "change-me"},
         "PHOENIX95_API_KEYS"),
        ({"WEBHOOK_SECRET": GOOD_WEBHOOK_SECRET, "PHOENIX95_API_KEYS": "CHANGE-ME"},
         "PHOENIX95_API_KEYS"),
        ({"WEBHOOK_SECRET": GOOD_WEBHOOK_SECRET, "PHOENIX95_API_KEYS": f"{GOOD_KEY},change-me"},
         "PHOENIX95_API_KEYS"),
        ({"PHOENIX95_API_KEYS": GOOD_KEY}, "WEBHOOK_SECRET"),
        ({"PHOENIX95_API_KEYS": GOOD_KEY, "WEBHOOK_SECRET": ""}, "WEBHOOK_SECRET"),
        ({"PHOENIX95_API_KEYS": GOOD_KEY, "WEBHOOK_SECRET": "change-me"}, "WEBHOOK_SECRET"),
        ({"PHOENIX95_API_KEYS": GOOD_KEY, "WEBHOOK_SECRET": " change-me "}, "WEBHOOK_SECRET"),
    ],
)
def test_live_mode_refuses_a_missing_or_placeholder_secret_and_names_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    monkeypatch.setenv("EXCHANGE_MODE", "live")
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SecretMissingError) as raised:
        brain()
    assert named in str(raised.value)


def test_live_mode_with_no_secrets_at_all_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXCHANGE_MODE", "live")
    with pytest.raises(SecretMissingError) as raised:
        brain()
    message = str(raised.value)
    assert "PHOENIX95_API_KEYS" in message or "WEBHOOK_SECRET" in message


def test_the_common_settings_in_live_mode_need_the_api_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXCHANGE_MODE", "live")
    with pytest.raises(SecretMissingError) as raised:
        settings()
    assert "PHOENIX95_API_KEYS" in str(raised.value)
    monkeypatch.setenv("PHOENIX95_API_KEYS", GOOD_KEY)
    assert settings().exchange_mode is ExchangeMode.LIVE


def test_brain_requires_both_secrets_in_live_mode() -> None:
    assert set(brain().required_live_secrets()) >= {"phoenix95_api_keys", "webhook_secret"}


@pytest.mark.parametrize(
    ("value", "placeholder"),
    [
        (None, True),
        ("", True),
        ("   ", True),
        ("change-me", True),
        ("Change-Me", True),
        ("changeme", True),
        (GOOD_KEY, False),
        ("change-me-please-9f8e7d", False),
    ],
)
def test_is_placeholder(value: str | None, placeholder: bool) -> None:
    assert is_placeholder(value) is placeholder


# --- secret values for masking ------------------------------------------------------------


def test_secret_values_include_the_password_inside_amqp_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://trader:Rabb1tPassw0rd@broker:5672/")
    values = settings().secret_values()
    assert "Rabb1tPassw0rd" in values
    assert "amqp://trader:Rabb1tPassw0rd@broker:5672/" in values


@pytest.mark.parametrize(
    ("variable", "url", "password"),
    [
        ("DATABASE_URL", "postgresql+asyncpg://phoenix:Pg-s3cret-pw@db:5432/phoenix95",
         "Pg-s3cret-pw"),
        ("REDIS_URL", "redis://:R3dis-pw@cache:6379/0", "R3dis-pw"),
    ],
)
def test_secret_values_include_passwords_inside_other_urls(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str, password: str
) -> None:
    monkeypatch.setenv(variable, url)
    assert password in settings().secret_values()


def test_secret_values_include_the_api_keys_and_the_webhook_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PHOENIX95_API_KEYS", f"{GOOD_KEY},second-key-123")
    monkeypatch.setenv("WEBHOOK_SECRET", GOOD_WEBHOOK_SECRET)
    values = brain().secret_values()
    assert {GOOD_KEY, "second-key-123", GOOD_WEBHOOK_SECRET} <= set(values)


def test_secret_values_leave_out_plain_settings() -> None:
    values = brain().secret_values()
    assert "/trading" not in values
    assert "phoenix95:" not in values
    assert "brain" not in values


def test_placeholder_secrets_are_unset_in_paper_mode_too(monkeypatch):
    """A secret left at `.env.example`'s placeholder must never open the webhook or the API."""
    monkeypatch.setenv("WEBHOOK_SECRET", "change-me")
    monkeypatch.setenv("PHOENIX95_API_KEYS", "change-me,real-key-0123456789")
    settings = BrainSettings(_env_file=None)
    assert settings.webhook_secret is None
    assert [k.get_secret_value() for k in settings.phoenix95_api_keys] == ["real-key-0123456789"]
