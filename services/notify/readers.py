"""What NOTIFY reads from RISK's and EXECUTE's HTTP APIs (it shares only contracts with
them): for the Telegram commands and the daily summary. Never crashes on an unreachable
service: ServiceUnreachableError names it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from services.notify.settings import NotifySettings
from shared.observability.logging import get_logger

log = get_logger(__name__)

HTTP_TIMEOUT_S = 5.0
CLOSES_READ = 1000  # EXECUTE's maximum page of closed positions


class ServiceUnreachableError(Exception):
    def __init__(self, service: str) -> None:
        super().__init__(service)
        self.service = service


class ServiceReader:
    """One HTTP client, its connections reused, for the commands, the daily summary and the
    dashboard's poller."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        keys = settings.phoenix95_api_keys
        self.client = httpx.AsyncClient(
            timeout=HTTP_TIMEOUT_S,
            headers={"X-API-Key": keys[0].get_secret_value()} if keys else {})

    async def get(self, base: str, path: str, service: str,
                  params: dict[str, Any] | None = None,
                  timeout_s: float | None = None) -> Any:
        try:
            response = await self.client.get(
                f"{base}{path}", params=params,
                timeout=timeout_s if timeout_s is not None else HTTP_TIMEOUT_S)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            # Debug only: the dashboard polls every 2 s; callers tell the operator.
            log.debug("service unreachable", service=service, path=path, error=str(exc))
            raise ServiceUnreachableError(service) from exc

    async def aclose(self) -> None:
        await self.client.aclose()

    async def account(self) -> dict[str, Any]:
        """EXECUTE's account: balance, equity, today's PnL."""
        return await self.get(self.settings.execute_url, "/account", "EXECUTE")

    async def closed_positions(self) -> list[dict[str, Any]]:
        """EXECUTE's latest CLOSES_READ closed positions, the latest first."""
        return await self.get(self.settings.execute_url, "/positions", "EXECUTE",
                              {"status": "closed", "limit": CLOSES_READ})


def closed_at(position: Mapping[str, Any]) -> datetime | None:
    """When a position from EXECUTE closed (UTC), None if it does not say."""
    text = position.get("closed_at")
    try:
        when = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    if when is None:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
