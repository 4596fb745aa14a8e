"""Binance USDⓈ-M through ccxt, built one way for every service (execute.md, "Exchange adapters").

ccxt's async `binanceusdm`, with its rate limiter on; `testnet` switches it to the sandbox. A
`BINANCE_API_BASE_URL` re-roots every USDⓈ-M (`fapi…`) endpoint at another host: a forward
proxy, or the local imitation of Binance the tests run against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from shared.config import ExchangeMode, Settings

if TYPE_CHECKING:
    import ccxt.async_support as ccxt_async

QUOTE = "USDT"


def ccxt_symbol(symbol: str) -> str:
    """The unified symbol of a Binance USDⓈ-M perpetual (`BTCUSDT` -> `BTC/USDT:USDT`)."""
    if symbol.endswith(QUOTE) and len(symbol) > len(QUOTE):
        return f"{symbol[:-len(QUOTE)]}/{QUOTE}:{QUOTE}"
    return symbol


def point_at(exchange: ccxt_async.Exchange, base_url: str) -> None:
    """Every `fapi…` URL of `exchange` moved to `base_url`, keeping its path:
    `https://fapi.binance.com/fapi/v1` -> `{base_url}/fapi/v1`. Spot, margin (`sapi`) and
    coin-M (`dapi`) URLs are left alone: USDⓈ-M trading never calls them (see
    `binanceusdm`), and `/futures/data` exists under both fapi and dapi hosts."""
    base = base_url.rstrip("/")
    urls = exchange.urls["api"]
    for key, url in list(urls.items()):
        if key.startswith("fapi") and isinstance(url, str):
            urls[key] = base + urlsplit(url).path


def binanceusdm(settings: Settings) -> ccxt_async.binanceusdm:
    """A ccxt `binanceusdm` for `settings` (live or testnet). The caller closes it."""
    import ccxt.async_support as ccxt_async

    key, secret = settings.binance_api_key, settings.binance_secret
    exchange = ccxt_async.binanceusdm({
        "apiKey": key.get_secret_value() if key else None,
        "secret": secret.get_secret_value() if secret else None,
        "enableRateLimit": True,
        "timeout": int(settings.exchange_timeout_s * 1000),
        "options": {
            # USDⓈ-M markets only. Currencies would come from a signed spot (`sapi`) call that a
            # futures-only key may not be allowed, and that would fail `load_markets` with it.
            "fetchMarkets": {"types": ["linear"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
        },
    })
    if settings.exchange_mode is ExchangeMode.TESTNET:
        exchange.set_sandbox_mode(True)
        # ccxt ≥ 4.5 refuses signed calls to testnet.binancefuture.com unless told otherwise
        # (it recommends Binance's "demo trading" instead); the spec names the testnet.
        exchange.options["disableFuturesSandboxWarning"] = True
    if settings.binance_api_base_url:
        point_at(exchange, settings.binance_api_base_url)
    return exchange
