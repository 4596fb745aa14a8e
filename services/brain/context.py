"""What BRAIN reads about the account: open positions and closed-trade performance.

Both are kept in Redis by EXECUTE; BRAIN caches them briefly so a burst of alerts costs one
read, and uses n = 0 and the prior while they are missing.
"""

from __future__ import annotations

import time
from typing import Generic, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.brain.scoring import Performance
from shared.observability.logging import get_logger
from shared.redis import Keys

log = get_logger(__name__)


T = TypeVar("T")


class _Cached(Generic[T]):
    def __init__(self, ttl_s: float, initial: T) -> None:
        self.ttl_s = ttl_s
        self.value = initial
        self.read_at = float("-inf")

    def fresh(self) -> bool:
        return time.monotonic() - self.read_at < self.ttl_s

    def set(self, value: T) -> T:
        self.value, self.read_at = value, time.monotonic()
        return value


class AccountContext:
    def __init__(self, redis: Redis, keys: Keys, positions_ttl_s: float, performance_ttl_s: float):
        self.redis = redis
        self.keys = keys
        self._positions = _Cached[int](positions_ttl_s, 0)
        self._performance = _Cached[Performance](performance_ttl_s, Performance())

    async def open_positions(self) -> int:
        if not self._positions.fresh():
            try:
                return self._positions.set(await self.redis.hlen(self.keys("positions", "open")))
            except RedisError as exc:
                log.warning("open positions unreadable, using the last known", error=str(exc))
        return self._positions.value

    async def performance(self) -> Performance:
        if not self._performance.fresh():
            try:
                raw = await self.redis.hgetall(self.keys("performance"))
                return self._performance.set(_performance_from(raw))
            except (RedisError, ValueError) as exc:
                log.warning("performance unreadable, using the last known", error=str(exc))
        return self._performance.value


def _performance_from(raw: dict[str, str]) -> Performance:
    if not raw:
        return Performance()
    return Performance(
        win_rate=float(raw.get("win_rate", 0)),
        avg_win=float(raw.get("avg_win", 0)),
        avg_loss=abs(float(raw.get("avg_loss", 0))),
        total_trades=int(float(raw.get("total_trades", 0))),
    )
