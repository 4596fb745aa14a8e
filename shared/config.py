"""Settings common to every service, read from the environment and an optional `.env`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Values that `.env.example` ships with; a secret still equal to one of them is unset in effect.
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "replace-me", "secret"})

DEFAULT_SYMBOLS = (
    "BTCUSDT ETHUSDT BNBUSDT ADAUSDT DOGEUSDT XRPUSDT SOLUSDT AVAXUSDT DOTUSDT LINKUSDT"
).split()


class ExchangeMode(StrEnum):
    PAPER = "paper"
    TESTNET = "testnet"
    LIVE = "live"


def split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.replace(",", " ").split() if item.strip()]
    return value


class SecretMissingError(RuntimeError):
    """A service was asked to trade for real without a secret it cannot do without."""


# The settings holding Binance's API key and secret (signed requests, live and testnet).
EXCHANGE_SECRETS = ("binance_api_key", "binance_secret")


class Settings(BaseSettings):
    """What every service reads. Each service extends it with its own fields."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_ignore_empty=True)

    service_name: str = "phoenix95"
    # Services listen on every interface: TradingView and the other services must reach them.
    bind_host: str = "0.0.0.0"  # noqa: S104
    exchange_mode: ExchangeMode = ExchangeMode.PAPER
    log_level: str = "INFO"
    log_format: str = Field("json", pattern="^(json|console)$")

    amqp_url: SecretStr = SecretStr("amqp://guest:guest@localhost:5672/")
    amqp_vhost: str = "/trading"
    amqp_prefetch: int = Field(16, ge=1, le=1000)
    amqp_publish_timeout_s: float = Field(5.0, gt=0)
    amqp_reconnect_interval_s: float = Field(1.0, gt=0)

    redis_url: SecretStr = SecretStr("redis://localhost:6379/0")
    redis_prefix: str = "phoenix95:"
    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///./var/phoenix95.db")

    phoenix95_api_keys: Annotated[list[SecretStr], NoDecode] = []

    # Trading parameters more than one service applies (spec README, "Fixed trading parameters").
    leverage: int = Field(20, ge=1, le=125)
    stop_loss_pct: float = Field(0.02, gt=0, lt=1)
    take_profit_pct: float = Field(0.02, gt=0)
    allowed_symbols: Annotated[list[str], NoDecode] = list(DEFAULT_SYMBOLS)
    max_position_size: float = Field(0.15, gt=0, le=1)

    # Binance USDⓈ-M, in `live` and `testnet` mode (execute.md, "Exchange adapters"): the
    # account's API key and secret, never logged. `binance_api_base_url` replaces the scheme
    # and host of every USDⓈ-M (`fapi…`) endpoint ccxt calls: a forward proxy in front of
    # Binance, or a local imitation in tests. Unset, ccxt's own URLs are used.
    binance_api_key: SecretStr | None = None
    binance_secret: SecretStr | None = None
    binance_api_base_url: str | None = None
    exchange_timeout_s: float = Field(10.0, gt=0)

    @field_validator("phoenix95_api_keys", "allowed_symbols", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return split_list(value)

    @field_validator("allowed_symbols")
    @classmethod
    def _upper_symbols(cls, value: list[str]) -> list[str]:
        return [symbol.upper() for symbol in value]

    @field_validator("binance_api_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("BINANCE_API_BASE_URL must be an http(s) URL, e.g. http://127.0.0.1:8080")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _placeholder_secrets(self) -> Settings:
        for name in self.required_secrets():
            value = getattr(self, name)
            if isinstance(value, list):
                missing = not value or any(is_placeholder(v) for v in value)
            else:
                missing = is_placeholder(value)
            if missing:
                raise SecretMissingError(
                    f"EXCHANGE_MODE={self.exchange_mode.value} needs {name.upper()}: set it in "
                    "the environment (it is missing or still the placeholder from .env.example)"
                )
        # A secret left at its .env.example placeholder is unset, in every mode.
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and is_placeholder(value):
                object.__setattr__(self, name, None)
            elif isinstance(value, list) and value and isinstance(value[0], SecretStr):
                object.__setattr__(self, name, [v for v in value if not is_placeholder(v)])
        return self

    def required_secrets(self) -> tuple[str, ...]:
        """Secret fields without which this service must not run in its exchange mode."""
        if self.exchange_mode is ExchangeMode.LIVE:
            return self.required_live_secrets()
        if self.exchange_mode is ExchangeMode.TESTNET:
            return self.required_testnet_secrets()
        return ()

    def required_live_secrets(self) -> tuple[str, ...]:
        """Secret fields without which this service must not run in live mode."""
        return ("phoenix95_api_keys",)

    def required_testnet_secrets(self) -> tuple[str, ...]:
        """Secret fields without which this service must not run in testnet mode (none by
        default: testnet trades no real money, so the HTTP API keys stay optional there)."""
        return ()

    def secret_values(self) -> list[str]:
        """Every secret value this process knows, so that logs can mask them."""
        values: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, SecretStr):
                    values.extend(_secret_parts(item.get_secret_value()))
        return [v for v in values if len(v) >= 4]


def is_placeholder(value: SecretStr | str | None) -> bool:
    if value is None:
        return True
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return raw.strip().lower() in PLACEHOLDER_SECRETS


def _secret_parts(value: str) -> list[str]:
    """The whole secret, plus the password inside a URL (it shows up alone in driver errors)."""
    parts = [value]
    if "://" in value:
        password = urlsplit(value).password
        if password:
            parts.append(password)
    return [p for p in parts if p]
