"""Redis (redis.asyncio) with every key under `REDIS_PREFIX`."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from shared.config import Settings


class Keys:
    """Builds prefixed key names, so no service writes outside its deployment's namespace."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)


# Beyond this many commands at once, a caller waits up to POOL_WAIT_S for a connection rather
# than failing (redis-py's default pool raises at 100: a webhook burst answered 503).
POOL_CONNECTIONS = 100
POOL_WAIT_S = 2.0


def create_redis(settings: Settings) -> Redis:
    return Redis.from_pool(BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=POOL_CONNECTIONS,
        timeout=POOL_WAIT_S,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
        health_check_interval=15,
    ))
