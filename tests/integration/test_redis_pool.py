"""The services' Redis client under more concurrent commands than it has connections."""

from __future__ import annotations

import asyncio

from shared.config import Settings
from shared.redis import POOL_CONNECTIONS, create_redis
from tests.conftest import REDIS_URL


async def test_more_commands_at_once_than_connections_wait_their_turn(redis_prefix):
    redis = create_redis(Settings(_env_file=None, redis_url=REDIS_URL))
    try:
        # Each BLPOP holds its connection for 0.2 s: half of these must wait for one.
        answers = await asyncio.gather(*(redis.blpop([f"{redis_prefix}empty"], timeout=0.2)
                                         for _ in range(POOL_CONNECTIONS + 50)))
    finally:
        await redis.aclose()
    assert answers == [None] * (POOL_CONNECTIONS + 50)
