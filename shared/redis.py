"""Redis (redis.asyncio) with every key under `REDIS_PREFIX`."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.config import Settings


class Keys:
    """Builds prefixed key names, so no service writes outside its deployment's namespace."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)


def create_redis(settings: Settings) -> Redis:
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
        health_check_interval=15,
    )
