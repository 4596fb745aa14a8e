"""BRAIN's settings (brain.md); everything comes from the environment or `.env`."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from services.brain.scoring import Thresholds
from shared.config import Settings, split_list

IPNetwork = IPv4Network | IPv6Network


class BrainSettings(Settings):
    service_name: str = "brain"
    brain_port: int = Field(8100, ge=1, le=65535)
    # TradingView gives up after 3 s: an unconfirmed publish must turn into a 503 before that.
    amqp_publish_timeout_s: float = Field(2.0, gt=0)
    webhook_deadline_s: float = Field(2.5, gt=0)

    webhook_secret: SecretStr | None = None
    webhook_allowed_ips: Annotated[list[IPNetwork], NoDecode] = []
    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = []
    webhook_max_body_bytes: int = Field(16 * 1024, ge=1024)
    rate_limit_per_minute: int = Field(120, ge=1)
    dedupe_window_s: int = Field(60, ge=1)

    min_confidence: float = Field(0.25, ge=0, le=1)
    phoenix95_threshold: float = Field(0.45, ge=0, le=1)
    execution_threshold: float = Field(0.85, ge=0, le=1)
    kelly_fraction: float = Field(0.20, gt=0, le=1)
    kelly_min_trades: int = Field(10, ge=0)
    prior_win_rate: float = Field(0.55, gt=0, lt=1)

    positions_cache_s: float = 2.0
    performance_cache_s: float = 120.0
    # Signals stored but not confirmed published this long ago are published again, while
    # younger than the max age (RISK's MAX_SIGNAL_AGE_S): a stale signal is not traded late.
    outbox_grace_s: float = Field(10.0, gt=0)
    outbox_max_age_s: float = Field(120.0, gt=0)
    outbox_interval_s: float = Field(5.0, gt=0)

    @field_validator("webhook_allowed_ips", "trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        value = split_list(value)
        if isinstance(value, list):
            return [ip_network(v, strict=False) if isinstance(v, str) else v for v in value]
        return value

    def required_live_secrets(self) -> tuple[str, ...]:
        return ("phoenix95_api_keys", "webhook_secret")

    def thresholds(self) -> Thresholds:
        return Thresholds(
            min_confidence=self.min_confidence,
            phoenix95=self.phoenix95_threshold,
            execution=self.execution_threshold,
            kelly_min_trades=self.kelly_min_trades,
            prior_win_rate=self.prior_win_rate,
        )
