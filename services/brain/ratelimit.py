"""Per-source rate limit over a sliding minute, in Redis so that replicas share it."""

from __future__ import annotations

import time
import uuid

from redis.asyncio import Redis

from shared.redis import Keys

WINDOW_S = 60


class RateLimiter:
    def __init__(self, redis: Redis, keys: Keys, per_minute: int) -> None:
        self.redis = redis
        self.keys = keys
        self.per_minute = per_minute

    async def allow(self, source: str) -> bool:
        """Counts this request; false once more than `per_minute` fell in the last minute."""
        key = self.keys("ratelimit", "webhook", source)
        now = time.time()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, 0, now - WINDOW_S)
            pipe.zadd(key, {f"{now}:{uuid.uuid4().hex[:8]}": now})
            pipe.zcard(key)
            pipe.expire(key, WINDOW_S)
            _, _, count, _ = await pipe.execute()
        return count <= self.per_minute
