"""What RISK knows of each symbol: price tick, quantity step, minimum notional, and brackets.

Paper mode uses the tables of risk.md (`PAPER_PRECISION`, the bundled brackets). Live and
testnet modes read them from Binance through ccxt: `load_markets` for precision, signed
`fetch_leverage_tiers` for brackets, cached and re-read every `MARKET_REFRESH_S` (sooner only
after a failed read, `RETRY_S`, or for a listed symbol allowed since start). Whatever cannot
be read (the exchange down, a symbol it does not list, a refused key) keeps the last value
read, or else falls back to the paper tables, symbol by symbol, with a warning. `market_for`
never waits on the network: it answers from the cache.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from services.risk.orders import Market
from services.risk.settings import RiskSettings
from shared.brackets import BUNDLED, FALLBACK, Bracket
from shared.config import ExchangeMode, Settings
from shared.exchange import binanceusdm, ccxt_symbol
from shared.instruments import PAPER_PRECISION, Precision
from shared.observability.logging import get_logger

if TYPE_CHECKING:
    import ccxt.async_support as ccxt_async

log = get_logger(__name__)

# A symbol missing from the paper table: fine ticks and steps, Binance's usual minimum notional.
DEFAULT_PRECISION = Precision(price_tick=0.0001, quantity_step=0.001, min_notional=5)
# After a failed read, the next attempt comes this soon (or at MARKET_REFRESH_S if shorter).
RETRY_S = 60.0
SIGNATURE = re.compile(r"(signature=)[^&\s\"']+")


def paper_market(symbol: str) -> Market:
    return Market(PAPER_PRECISION.get(symbol, DEFAULT_PRECISION), BUNDLED.get(symbol, FALLBACK))


class MarketCatalog(Protocol):
    def market_for(self, symbol: str) -> Market:
        """The symbol's market, from memory (never the network)."""
        ...

    async def load(self, symbols: Iterable[str]) -> None:
        """Read (or re-read, when due) what the catalog knows of `symbols`; never raises."""
        ...

    async def run(self) -> None:
        """Keep the cache fresh until cancelled."""
        ...

    async def close(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """Where the data comes from and how fresh it is, for /status."""
        ...


class PaperCatalog:
    """The tables of risk.md; nothing to load."""

    def market_for(self, symbol: str) -> Market:
        return paper_market(symbol)

    async def load(self, symbols: Iterable[str]) -> None:
        return None

    async def run(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"source": "bundled"}


@dataclass(frozen=True)
class _Entry:
    value: Any
    read_at: datetime


class LiveCatalog:
    """Binance USDⓈ-M through ccxt, cached; the paper tables wherever a read fails."""

    def __init__(self, settings: Settings, symbols: Iterable[str], refresh_s: float,
                 exchange: ccxt_async.binanceusdm | None = None) -> None:
        self.exchange = exchange if exchange is not None else binanceusdm(settings)
        self.symbols = list(dict.fromkeys(symbols))
        self.refresh_s = refresh_s
        self._precision: dict[str, _Entry] = {}
        self._brackets: dict[str, _Entry] = {}
        self._next_read = 0.0  # time.monotonic() of the next due read
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    # --- the cache ---------------------------------------------------------------------

    def market_for(self, symbol: str) -> Market:
        fallback = paper_market(symbol)
        precision = self._precision.get(symbol)
        brackets = self._brackets.get(symbol)
        if (precision is None or brackets is None) and symbol not in self.symbols \
                and self._listed(symbol):
            # Allowed since start (POST /update): read it now rather than at the next refresh.
            # Only symbols the exchange lists: a stream of made-up ones (/check) triggers no
            # reads and grows nothing.
            self.symbols.append(symbol)
            self._next_read = 0.0
        return Market(precision.value if precision else fallback.precision,
                      brackets.value if brackets else fallback.brackets)

    def describe(self) -> dict[str, Any]:
        def read_at(table: dict[str, _Entry], symbol: str) -> str | None:
            entry = table.get(symbol)
            return entry.read_at.isoformat() if entry else None

        return {
            "source": "exchange",
            "refresh_s": self.refresh_s,
            "last_error": self.last_error,
            "symbols": {
                symbol: {"precision_read_at": read_at(self._precision, symbol),
                         "brackets_read_at": read_at(self._brackets, symbol)}
                for symbol in self.symbols
            },
        }

    # --- reading -----------------------------------------------------------------------

    async def load(self, symbols: Iterable[str] = (), *, force: bool = False) -> None:
        for symbol in symbols:
            if symbol not in self.symbols:
                self.symbols.append(symbol)
                force = True
        async with self._lock:
            if not force and time.monotonic() < self._next_read:
                return
            self._next_read = float("inf")  # market_for may bring it forward meanwhile
            complete = await self._read()
            delay = self.refresh_s if complete else min(self.refresh_s, RETRY_S)
            self._next_read = min(self._next_read, time.monotonic() + delay)

    async def run(self) -> None:
        # Short naps, so that a symbol allowed meanwhile is read without waiting an hour.
        while True:
            await asyncio.sleep(min(max(self._next_read - time.monotonic(), 1.0), 30.0))
            await self.load()

    async def close(self) -> None:
        await self.exchange.close()

    async def _read(self) -> bool:
        """One read of markets and brackets; False when a call or an answer failed (a symbol
        the exchange does not list is no failure: reading again would not list it)."""
        self.last_error = None
        now = datetime.now(UTC)
        complete = True
        # Any exception: ccxt's own (network, HTTP, Binance codes) and whatever an unexpected
        # answer makes its parsing raise. RISK must keep deciding on the fallback.
        try:
            await self.exchange.load_markets(reload=True)
        except Exception as exc:
            self._failed("load_markets", exc)
            return False
        ids = {symbol: self._unified(symbol) for symbol in self.symbols}
        listed = {symbol: unified for symbol, unified in ids.items() if unified is not None}
        for symbol in self.symbols:
            if symbol not in listed:
                log.warning("symbol not listed by the exchange; paper precision and bundled "
                            "brackets used", symbol=symbol)
        for symbol, unified in listed.items():
            try:
                self._precision[symbol] = _Entry(self._precision_of(symbol, unified), now)
            except (KeyError, TypeError, ValueError) as exc:
                self._failed("load_markets", exc, symbol)
                complete = False
        if not listed:
            return complete
        try:
            tiers = await self.exchange.fetch_leverage_tiers(list(listed.values()))
        except Exception as exc:
            self._failed("fetch_leverage_tiers", exc)
            return False
        for symbol, unified in listed.items():
            try:
                self._brackets[symbol] = _Entry(_brackets_of(tiers[unified]), now)
            except (KeyError, TypeError, ValueError) as exc:
                self._failed("fetch_leverage_tiers", exc, symbol)
                complete = False
        log.info("market data read from the exchange", symbols=sorted(listed),
                 complete=complete)
        return complete

    def _listed(self, symbol: str) -> bool:
        return bool(self.exchange.markets_by_id) and self._unified(symbol) is not None

    def _unified(self, symbol: str) -> str | None:
        """ccxt's symbol of Binance's `symbol` among the loaded markets (USDⓈ-M perpetuals)."""
        for market in self.exchange.markets_by_id.get(symbol, []):
            if market.get("swap") and market.get("linear"):
                return market["symbol"]
        unified = ccxt_symbol(symbol)
        return unified if unified in self.exchange.markets else None

    def _precision_of(self, symbol: str, unified: str) -> Precision:
        from ccxt.base.decimal_to_precision import TICK_SIZE

        market = self.exchange.markets[unified]
        tick, step = market["precision"]["price"], market["precision"]["amount"]
        if self.exchange.precisionMode != TICK_SIZE:  # decimal places, not sizes
            tick, step = 10.0 ** -int(tick), 10.0 ** -int(step)
        min_notional = (market.get("limits") or {}).get("cost", {}).get("min")
        if min_notional is None:
            min_notional = PAPER_PRECISION.get(symbol, DEFAULT_PRECISION).min_notional
        precision = Precision(price_tick=float(tick), quantity_step=float(step),
                              min_notional=float(min_notional))
        if precision.price_tick <= 0 or precision.quantity_step <= 0:
            raise ValueError(f"{symbol}: tick {tick}, step {step}")
        return precision

    def _failed(self, call: str, exc: BaseException, symbol: str | None = None) -> None:
        # ccxt's messages carry the URL and Binance's answer, never the key or the secret;
        # the request's signature (in the URL of a GET) is left out all the same.
        error = SIGNATURE.sub(r"\1***", f"{type(exc).__name__}: {exc}")
        self.last_error = f"{call}: {error}"[:500]
        kept = [s for s in ([symbol] if symbol else self.symbols)
                if (self._precision if call == "load_markets" else self._brackets).get(s)]
        log.warning("market data not read from the exchange; last values kept, else the "
                    "bundled table", call=call, symbol=symbol, error=self.last_error,
                    kept_last_read=kept)


def _brackets_of(tiers: list[dict[str, Any]]) -> tuple[Bracket, ...]:
    """ccxt leverage tiers (minNotional, maxNotional, maintenanceMarginRate, maxLeverage,
    info.cum) as brackets, lowest first."""
    brackets = tuple(sorted(
        (Bracket(floor=float(t["minNotional"]), cap=float(t["maxNotional"]),
                 maintenance_margin_rate=float(t["maintenanceMarginRate"]),
                 maintenance_amount=float(t["info"]["cum"]),
                 max_leverage=int(t["maxLeverage"]))
         for t in tiers),
        key=lambda b: b.floor,
    ))
    if not brackets:
        raise ValueError("no leverage tiers")
    for bracket in brackets:
        if not (0 <= bracket.floor < bracket.cap and 0 < bracket.maintenance_margin_rate < 1
                and bracket.max_leverage >= 1):
            raise ValueError(f"implausible bracket {bracket}")
    return brackets


def catalog_for(settings: RiskSettings) -> MarketCatalog:
    """Paper tables in paper mode; Binance (testnet: its sandbox) otherwise."""
    if settings.exchange_mode is ExchangeMode.PAPER:
        return PaperCatalog()
    return LiveCatalog(settings, settings.allowed_symbols, settings.market_refresh_s)
