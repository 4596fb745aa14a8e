"""Per-source rate limit over a sliding minute, in Redis so that replicas share it."""

from __future__ import annotations

import time
import uuid

from redis.asyncio import Redis

from shared.redis import Keys

WINDOW_S = 60

# One round trip, atomic: forget requests older than the window, count this one, answer how many
# fell in the window. KEYS[1] the source's window; ARGV: now, window start, member, window (s).
_COUNT = """
redis.call('zremrangebyscore', KEYS[1], 0, ARGV[2])
redis.call('zadd', KEYS[1], ARGV[1], ARGV[3])
redis.call('expire', KEYS[1], ARGV[4])
return redis.call('zcard', KEYS[1])
"""


class RateLimiter:
    def __init__(self, redis: Redis, keys: Keys, per_minute: int) -> None:
        self.keys = keys
        self.per_minute = per_minute
        self._count = redis.register_script(_COUNT)

    async def allow(self, source: str) -> bool:
        """Counts this request; false once more than `per_minute` fell in the last minute."""
        now = time.time()
        count = await self._count(
            keys=[self.keys("ratelimit", "webhook", source)],
            args=[now, now - WINDOW_S, f"{now}:{uuid.uuid4().hex[:8]}", WINDOW_S],
        )
        return count <= self.per_minute
