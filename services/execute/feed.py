"""The market-data feed (execute.md): Binance public tickers and mark prices through ccxt's
websocket methods, into `market:stream`. Reconnects with backoff and jitter, forever."""

from __future__ import annotations

import asyncio
import random
import time

from redis.asyncio import Redis

from services.execute.settings import ExecuteSettings
from shared.exchange import ccxt_symbol
from shared.observability.logging import get_logger
from shared.redis import Keys

log = get_logger(__name__)

STREAM_MAXLEN = 10_000


class MarketFeed:
    def __init__(self, settings: ExecuteSettings, redis: Redis, keys: Keys) -> None:
        self.settings = settings
        self.redis = redis
        self.stream = keys("market", "stream")
        self.connected = False

    async def run(self) -> None:
        import ccxt.pro as ccxtpro  # public data: no keys

        symbols = {ccxt_symbol(s): s for s in self.settings.allowed_symbols}
        delay = 1.0
        while True:
            exchange = ccxtpro.binanceusdm({"enableRateLimit": True})
            try:
                while True:
                    tickers = await exchange.watch_tickers(list(symbols))
                    self.connected, delay = True, 1.0
                    now_ms = str(int(time.time() * 1000))
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for unified, ticker in tickers.items():
                            if unified in symbols and ticker.get("last"):
                                mark = (ticker.get("info") or {}).get("markPrice")
                                fields = {"symbol": symbols[unified],
                                          "price": str(ticker["last"]), "ts": now_ms}
                                if mark:
                                    fields["mark_price"] = str(mark)
                                pipe.xadd(self.stream, fields, maxlen=STREAM_MAXLEN,
                                          approximate=True)
                        await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected = False
                wait = delay * random.uniform(0.8, 1.2)
                log.warning("market data disconnected, reconnecting", retry_in_s=round(wait, 1),
                            error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(wait)
                delay = min(delay * 2, 60.0)
            finally:
                await exchange.close()
