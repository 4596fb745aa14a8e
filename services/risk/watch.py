"""Liquidation-distance monitoring from `market:stream` (risk.md).

Ticks are read through the `risk_processors` consumer group. Per tick only the positions of
that symbol are looked at, in memory; the only writes are the rare alerts.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis

from services.risk.engine import PRODUCER, RiskEngine
from services.risk.liquidation_watch import Level, alert_for, level_for
from services.risk.metrics import LIQUIDATION_DISTANCE
from services.risk.models import KnownPosition
from shared.contracts import Envelope, RiskAlertCode, RiskAlertRaised
from shared.liquidation import distance_to_liquidation
from shared.messaging import topology
from shared.observability.logging import get_logger
from shared.redis import Keys
from shared.streams import StreamReader

log = get_logger(__name__)

GROUP = "risk_processors"

# Moves a position's level only if no one (a run before a restart) moved it first, so each
# level change alerts once.
_SWAP_LEVEL = """
if (redis.call('hget', KEYS[1], ARGV[1]) or '0') == ARGV[2] then
  redis.call('hset', KEYS[1], ARGV[1], ARGV[3]) return 1
end
return 0
"""


class LiquidationWatch:
    def __init__(self, engine: RiskEngine, redis: Redis, keys: Keys, refresh_s: float) -> None:
        self.engine = engine
        self.redis = redis
        self.stream = keys("market", "stream")
        self.levels_key = keys("risk", "liquidation_levels")
        self._swap_level = redis.register_script(_SWAP_LEVEL)
        self.refresh_s = refresh_s
        self.reader = StreamReader(redis, self.stream, GROUP, batch=500)
        self._positions: dict[str, list[KnownPosition]] = {}
        self._levels: dict[str, Level] = {}
        self._loaded_at = float("-inf")

    async def refresh(self) -> None:
        by_symbol: dict[str, list[KnownPosition]] = {}
        for position in await self.engine.open_positions():
            by_symbol.setdefault(position.symbol, []).append(position)
        for symbol in set(self._positions) - set(by_symbol):  # no series for closed ones
            with contextlib.suppress(KeyError):
                LIQUIDATION_DISTANCE.remove(symbol)
        self._positions = by_symbol
        live = {p.position_id for ps in by_symbol.values() for p in ps}
        stored = await self.redis.hgetall(self.levels_key)
        self._levels = {pid: Level(int(v)) for pid, v in stored.items() if pid in live}
        gone = [pid for pid in stored if pid not in live]
        if gone:
            await self.redis.hdel(self.levels_key, *gone)
        self._loaded_at = time.monotonic()

    async def run(self) -> None:
        await self.reader.run(self.on_tick, before_read=self._refresh_when_due)

    async def _refresh_when_due(self) -> None:
        if time.monotonic() - self._loaded_at > self.refresh_s:
            await self.refresh()

    async def on_tick(self, fields: dict[str, str]) -> None:
        positions = self._positions.get(fields.get("symbol", ""))
        if not positions:
            return
        try:
            price = float(fields.get("mark_price") or fields["price"])
        except (KeyError, ValueError):
            return  # a malformed tick: the stream is best-effort data
        for position in positions:
            await self._watch(position, price)

    async def _watch(self, position: KnownPosition, price: float) -> None:
        distance = distance_to_liquidation(price, position.liquidation_price)
        entry_distance = distance_to_liquidation(position.entry_price,
                                                 position.liquidation_price)
        LIQUIDATION_DISTANCE.labels(position.symbol).set(distance)
        previous = self._levels.get(position.position_id, Level.OK)
        current = level_for(distance, entry_distance)
        if current is previous:
            return
        if not await self._swap_level(keys=[self.levels_key],
                                      args=[position.position_id, int(previous), int(current)]):
            await self.refresh()  # someone else moved it: take their view
            return
        self._levels[position.position_id] = current
        code = alert_for(previous, current)
        if code is None:
            return
        alert = RiskAlertRaised(
            code=code,
            severity="critical" if code is RiskAlertCode.LIQUIDATION_CRITICAL else "warning",
            message=(f"{position.symbol} {position.side} is {distance:.2%} from liquidation "
                     f"at {position.liquidation_price} (was {entry_distance:.2%} at entry)"),
            symbol=position.symbol,
            details={"position_id": position.position_id, "price": price,
                     "liquidation_price": position.liquidation_price, "distance": distance,
                     "entry_distance": entry_distance},
            raised_at=datetime.now(UTC),
        )
        envelope = Envelope.wrap(alert, producer=PRODUCER,
                                 correlation_id=position.signal_id or str(uuid.uuid4()))
        try:
            async with self.engine.sessions.begin() as session:
                self.engine.outbox.stage(session, envelope, topology.RISK_MANAGEMENT.name,
                                         "risk.alert")
        except Exception:
            # Not recorded: put the level back so that the next tick raises it again.
            await self._swap_level(keys=[self.levels_key],
                                   args=[position.position_id, int(current), int(previous)])
            self._levels[position.position_id] = previous
            raise
        await self.engine.outbox.send_pending()
        log.warning("liquidation distance alert", code=code.value, symbol=position.symbol,
                    distance=distance)
