"""A local imitation of Binance USDⓈ-M's REST API, for tests through the real ccxt.

An aiohttp server on 127.0.0.1 (a random port). ccxt is pointed at it by re-rooting its
`fapi…` URLs (`shared.exchange.point_at`, or `BINANCE_API_BASE_URL`), so everything between
ccxt's call and the HTTP request — URL building, signing, headers, error mapping — is ccxt's
own. It answers what `binanceusdm` calls:

- `GET /fapi/v1/exchangeInfo` (`load_markets`; binanceusdm fetches `linear` markets only, and
  with `fetchCurrencies` off it makes no `sapi` call)
- `GET /fapi/v1/leverageBracket`, signed (`fetch_leverage_tiers`)
- `GET /fapi/v1/time`, `GET /fapi/v1/ping`

Signed endpoints are checked as Binance does: `X-MBX-APIKEY` must be the account's key, and the
`signature` (HMAC-SHA256 with the secret, over the query string followed by the body, without
the signature itself) must match, with a `timestamp` inside `recvWindow`; otherwise Binance's
error JSON (-2014, -2015, -1022, -1102, -1021).

Extending it (EXECUTE's orders, positions, …):

    fake.route("POST", "/fapi/v1/order", handler, signed=True)

where `handler(request: Received) -> Reply | dict | list` sees the parsed parameters (query
and form body together: `newClientOrderId`, `reduceOnly`, `stopPrice`, `workingType`, …).
Every request is recorded in `fake.requests` (rejected ones too). Failures are injected per
path with `fake.fail(path, Failure.timeout() | Failure.server_error() | Failure.rate_limited()
| Failure.binance(code, msg), times=…)`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

API_KEY = "fake-binance-api-key-3Jq9"
SECRET = "fake-binance-secret-Vb71"

# ---------------------------------------------------------------------------------------------
# Data: what a symbol looks like in exchangeInfo, and its leverage brackets
# ---------------------------------------------------------------------------------------------


def usdm_symbol(symbol: str, *, tick: str, step: str, min_notional: str,
                status: str = "TRADING") -> dict[str, Any]:
    """One `symbols[]` item of `/fapi/v1/exchangeInfo`, a perpetual (as Binance sends it)."""
    base = symbol.removesuffix("USDT")
    return {
        "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL",
        "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": status,
        "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
        "baseAsset": base, "quoteAsset": "USDT", "marginAsset": "USDT",
        "pricePrecision": max(0, -_exponent(tick)), "quantityPrecision": max(0, -_exponent(step)),
        "baseAssetPrecision": 8, "quotePrecision": 8,
        "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0,
        "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "4529764",
             "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "1000", "stepSize": step},
            {"filterType": "MARKET_LOT_SIZE", "minQty": step, "maxQty": "120",
             "stepSize": step},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": min_notional},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
             "multiplierDown": "0.9500", "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                       "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def _exponent(number: str) -> int:
    from decimal import Decimal

    exponent = Decimal(number).normalize().as_tuple().exponent
    return exponent if isinstance(exponent, int) else 0


def brackets(*rows: tuple[float, float, float, float, int]) -> list[dict[str, Any]]:
    """`(floor, cap, maintMarginRatio, cum, initialLeverage)` rows as Binance's brackets."""
    return [
        {"bracket": i, "initialLeverage": leverage, "notionalCap": cap, "notionalFloor": floor,
         "maintMarginRatio": mmr, "cum": cum}
        for i, (floor, cap, mmr, cum, leverage) in enumerate(rows, start=1)
    ]


# ---------------------------------------------------------------------------------------------
# Requests, replies and failures
# ---------------------------------------------------------------------------------------------


@dataclass
class Received:
    """One request as the fake saw it."""

    method: str
    path: str
    params: dict[str, str]  # query and form body together, as Binance reads them
    headers: dict[str, str]
    query_string: str
    body: str
    signed: bool = False  # carried a valid key and signature
    status: int = 0  # what the fake answered

    @property
    def api_key(self) -> str | None:
        return self.headers.get("X-MBX-APIKEY")


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialisable, or a str sent as text
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Failure:
    """What an endpoint does instead of answering (see `FakeBinance.fail`)."""

    reply: Reply | None = None
    delay_s: float = 0.0  # hold the request this long first (a timeout, for a short client)

    @classmethod
    def timeout(cls, delay_s: float = 30.0) -> Failure:
        """No answer for `delay_s` (then a 504): set the client's timeout below it."""
        return cls(Reply(504, "<html><body>504 Gateway Time-out</body></html>"), delay_s)

    @classmethod
    def server_error(cls, status: int = 503) -> Failure:
        return cls(Reply(status, "<html><body>Service Unavailable</body></html>",
                         {"Content-Type": "text/html"}))

    @classmethod
    def rate_limited(cls) -> Failure:
        return cls(Reply(429, {"code": -1003, "msg": (
            "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute. "
            "Please use the websocket for live updates to avoid polling the API.")}))

    @classmethod
    def binance(cls, code: int, msg: str, status: int = 400) -> Failure:
        return cls(Reply(status, {"code": code, "msg": msg}))


# Returns (or, if async, resolves to) a Reply, or a JSON body to send with 200.
Handler = Callable[[Received], Any]


@dataclass
class _Route:
    handler: Handler
    signed: bool


@dataclass
class _Injected:
    failure: Failure
    remaining: int | None  # None: until healed


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class FakeBinance:
    """Binance USDⓈ-M on 127.0.0.1. Use as `async with FakeBinance() as fake: …fake.url…`."""

    def __init__(self, api_key: str = API_KEY, secret: str = SECRET) -> None:
        self.api_key, self.secret = api_key, secret
        self.symbols: dict[str, dict[str, Any]] = {}
        self.leverage_brackets: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[Received] = []
        self.recv_window_ms = 60_000
        self._routes: dict[tuple[str, str], _Route] = {}
        self._failures: dict[str, _Injected] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.route("GET", "/fapi/v1/ping", lambda _: {})
        self.route("GET", "/fapi/v1/time", lambda _: {"serverTime": _now_ms()})
        self.route("GET", "/fapi/v1/exchangeInfo", self._exchange_info)
        self.route("GET", "/fapi/v1/leverageBracket", self._leverage_bracket, signed=True)

    # --- set-up ----------------------------------------------------------------------------

    def add_symbol(self, symbol: str, *, tick: str, step: str, min_notional: str,
                   leverage_brackets: list[dict[str, Any]] | None = None) -> None:
        self.symbols[symbol] = usdm_symbol(symbol, tick=tick, step=step,
                                           min_notional=min_notional)
        if leverage_brackets is not None:
            self.leverage_brackets[symbol] = leverage_brackets

    def route(self, method: str, path: str, handler: Handler, *, signed: bool = False) -> None:
        """Answer `method path` with `handler` (replacing any earlier one)."""
        self._routes[(method.upper(), path)] = _Route(handler, signed)

    def fail(self, path: str, failure: Failure, times: int | None = None) -> None:
        """The next `times` requests to `path` (all of them if None) fail with `failure`."""
        self._failures[path] = _Injected(failure, times)

    def heal(self, path: str | None = None) -> None:
        if path is None:
            self._failures.clear()
        else:
            self._failures.pop(path, None)

    def received(self, path: str, method: str | None = None) -> list[Received]:
        return [r for r in self.requests
                if r.path == path and (method is None or r.method == method.upper())]

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> FakeBinance:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        self._closing.set()  # releases requests held by a timeout failure
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBinance:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- handling --------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        params = dict(parse_qsl(request.query_string, keep_blank_values=True))
        if body and request.content_type == "application/x-www-form-urlencoded":
            params |= dict(parse_qsl(body, keep_blank_values=True))
        received = Received(request.method, request.path, params, dict(request.headers),
                            request.query_string, body)
        self.requests.append(received)
        reply = await self._answer(received)
        received.status = reply.status
        if isinstance(reply.body, str):
            return web.Response(status=reply.status, text=reply.body,
                                headers=reply.headers or {"Content-Type": "text/plain"})
        return web.Response(status=reply.status, text=json.dumps(reply.body),
                            content_type="application/json", headers=reply.headers)

    async def _answer(self, received: Received) -> Reply:
        injected = self._failures.get(received.path)
        if injected is not None:
            if injected.remaining is not None:
                injected.remaining -= 1
                if injected.remaining <= 0:
                    del self._failures[received.path]
            if injected.failure.delay_s:
                try:
                    await asyncio.wait_for(self._closing.wait(), injected.failure.delay_s)
                except TimeoutError:
                    pass
            if injected.failure.reply is not None:
                return injected.failure.reply
        route = self._routes.get((received.method, received.path))
        if route is None:
            return Reply(404, {"code": -5000, "msg": (
                f"fake Binance: no handler for {received.method} {received.path}")})
        if route.signed:
            refused = self._check_signature(received)
            if refused is not None:
                return refused
            received.signed = True
        result = route.handler(received)
        if asyncio.iscoroutine(result):
            result = await result
        return result if isinstance(result, Reply) else Reply(200, result)

    def _check_signature(self, received: Received) -> Reply | None:
        key = received.api_key
        if not key:
            return Reply(401, {"code": -2014, "msg": "API-key format invalid."})
        if not hmac.compare_digest(key, self.api_key):
            return Reply(401, {"code": -2015,
                               "msg": "Invalid API-key, IP, or permissions for action."})
        signature = received.params.get("signature")
        if not signature:
            return Reply(400, {"code": -1102, "msg": (
                "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")})
        payload = _without_signature(received.query_string) + _without_signature(received.body)
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            return Reply(400, {"code": -1022, "msg": "Signature for this request is not valid."})
        try:
            timestamp = int(received.params["timestamp"])
        except (KeyError, ValueError):
            return Reply(400, {"code": -1102, "msg": (
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")})
        window = int(received.params.get("recvWindow", 5000))
        if not (timestamp - 1000 <= _now_ms() <= timestamp + min(window, self.recv_window_ms)):
            return Reply(400, {"code": -1021, "msg": (
                "Timestamp for this request is outside of the recvWindow.")})
        return None

    # --- default endpoints -----------------------------------------------------------------

    def _exchange_info(self, _: Received) -> dict[str, Any]:
        return {
            "timezone": "UTC", "serverTime": _now_ms(), "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1,
                 "limit": 1200},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": list(self.symbols.values()),
        }

    def _leverage_bracket(self, received: Received) -> Reply | dict[str, Any] | list[Any]:
        def item(symbol: str) -> dict[str, Any]:
            return {"symbol": symbol, "notionalCoef": 1.0,
                    "brackets": self.leverage_brackets[symbol]}

        symbol = received.params.get("symbol")
        if symbol is None:
            return [item(s) for s in self.leverage_brackets]
        if symbol not in self.leverage_brackets:
            return Reply(400, {"code": -1121, "msg": "Invalid symbol."})
        return item(symbol)  # with `symbol`, one object rather than a list (as Binance does)


def _without_signature(part: str) -> str:
    return "&".join(p for p in part.split("&") if p and not p.startswith("signature="))


def _now_ms() -> int:
    return int(time.time() * 1000)
