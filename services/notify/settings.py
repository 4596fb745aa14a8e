"""NOTIFY's settings (notify.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.config import Settings, split_list


class NotifySettings(Settings):
    service_name: str = "notify"
    notify_port: int = Field(8103, ge=1, le=65535)

    telegram_bot_token: SecretStr | None = None
    telegram_chat_ids: Annotated[list[int], NoDecode] = []
    telegram_api_base_url: str | None = None  # PTB's base_url; tests point it at an imitation
    # About one message a second per chat (Telegram's own limit).
    telegram_min_interval_s: float = Field(1.0, ge=0)
    notify_holds: bool = True
    dashboard_password: SecretStr | None = None
    # Telegram's /status, /positions and /pnl read these services' HTTP APIs; the
    # dashboard polls them (and BRAIN's /health).
    brain_url: str = "http://localhost:8100"
    risk_url: str = "http://localhost:8101"
    execute_url: str = "http://localhost:8102"

    @field_validator("telegram_chat_ids", mode="before")
    @classmethod
    def _chat_ids(cls, value: object) -> object:
        return split_list(value)

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_bot_token is not None and bool(self.telegram_chat_ids)
