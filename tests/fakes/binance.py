"""A local imitation of Binance USDⓈ-M's REST API, for tests through the real ccxt.

An aiohttp server on 127.0.0.1 (a random port). ccxt is pointed at it by re-rooting its
`fapi…` URLs (`shared.exchange.point_at`, or `BINANCE_API_BASE_URL`), so everything between
ccxt's call and the HTTP request — URL building, signing, headers, error mapping — is ccxt's
own. It answers what `binanceusdm` calls:

- `GET /fapi/v1/exchangeInfo` (`load_markets`; binanceusdm fetches `linear` markets only, and
  with `fetchCurrencies` off it makes no `sapi` call)
- `GET /fapi/v1/leverageBracket`, signed (`fetch_leverage_tiers`, and `fetch_positions`)
- `GET /fapi/v1/time`, `GET /fapi/v1/ping`

and, signed, a small stateful one-way-mode account (EXECUTE's live adapter):

- `GET /fapi/v1/positionSide/dual` (`fetch_position_mode`): `hedge_mode`
- `POST /fapi/v1/marginType` (`set_margin_mode`): -4046 "No need to change margin type." when
  it already is; -4048 with a position open
- `POST /fapi/v1/leverage` (`set_leverage`)
- `POST|GET|DELETE /fapi/v1/order`, `GET /fapi/v1/openOrders`: MARKET orders, filled at the
  symbol's price (`set_price`) with a taker fee, or after `market_fill_after_queries` queries;
  reduce-only, min-notional, step, margin (-2019), duplicate client id (-4116) and position-mode
  (-4061) checks; conditional types answer -4120 as Binance does since the Algo Service
- `POST|GET|DELETE /fapi/v1/algoOrder`, `GET /fapi/v1/openAlgoOrders`: STOP_MARKET and
  TAKE_PROFIT_MARKET conditional orders (`clientAlgoId`, `triggerPrice`, `workingType`,
  `reduceOnly`), which `set_price` triggers into a MARKET order (`actualOrderId`); -2021 for one
  that would trigger at once
- `GET /fapi/v1/userTrades` (fills and their commission)
- `GET /fapi/v2|v3/positionRisk`, `GET /fapi/v2|v3/account`, `GET /fapi/v2/balance`

Orders, algo orders, positions and the wallet are plain attributes (`orders`, `algo_orders`,
`positions`, `wallet_balance`) a test may read or seed (`open_position`). Binance keeps a
client order id unique among open orders only; the fake refuses any reuse (-4116), so that a
second send is always visible.

Signed endpoints are checked as Binance does: `X-MBX-APIKEY` must be the account's key, and the
`signature` (HMAC-SHA256 with the secret, over the query string followed by the body, without
the signature itself) must match, with a `timestamp` inside `recvWindow`; otherwise Binance's
error JSON (-2014, -2015, -1022, -1102, -1021).

Extending or overriding it:

    fake.route("POST", "/fapi/v1/order", handler, signed=True)

where `handler(request: Received) -> Reply | dict | list` sees the parsed parameters (query
and form body together: `newClientOrderId`, `reduceOnly`, `stopPrice`, `workingType`, …).
Every request is recorded in `fake.requests` (rejected ones too). Failures are injected per
path (and optionally method) with `fake.fail(path, Failure.timeout() | Failure.server_error()
| Failure.rate_limited() | Failure.binance(code, msg), times=…, method=…)`. A failure made
with `processed=True` lets the request take effect first and only then replaces the answer:
"sent, but no answer" (`Failure.timeout(processed=True)` on `POST /fapi/v1/order` records the
order, and a later query by its client id finds it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from shared.liquidation import liquidation_price

API_KEY = "fake-binance-api-key-3Jq9"
SECRET = "fake-binance-secret-Vb71"

CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
CONDITIONAL_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                     "TRAILING_STOP_MARKET")
ZERO = Decimal(0)

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


def error(code: int, msg: str, status: int = 400) -> Reply:
    """Binance's error answer."""
    return Reply(status, {"code": code, "msg": msg})


@dataclass
class Failure:
    """What an endpoint does instead of answering (see `FakeBinance.fail`)."""

    reply: Reply | None = None
    delay_s: float = 0.0  # hold the request this long first (a timeout, for a short client)
    processed: bool = False  # the request takes effect before the failure replaces the answer

    @classmethod
    def timeout(cls, delay_s: float = 30.0, *, processed: bool = False) -> Failure:
        """No answer for `delay_s` (then a 504): set the client's timeout below it. With
        `processed`, the request still takes effect (an order sent, its answer lost)."""
        return cls(Reply(504, "<html><body>504 Gateway Time-out</body></html>"), delay_s,
                   processed)

    @classmethod
    def server_error(cls, status: int = 503, *, processed: bool = False) -> Failure:
        return cls(Reply(status, "<html><body>Service Unavailable</body></html>",
                         {"Content-Type": "text/html"}), processed=processed)

    @classmethod
    def rate_limited(cls) -> Failure:
        return cls(Reply(429, {"code": -1003, "msg": (
            "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute. "
            "Please use the websocket for live updates to avoid polling the API.")}))

    @classmethod
    def binance(cls, code: int, msg: str, status: int = 400) -> Failure:
        return cls(error(code, msg, status))


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
# The account's state
# ---------------------------------------------------------------------------------------------


@dataclass
class FakeOrder:
    """An order of the matching engine (`/fapi/v1/order`)."""

    order_id: int
    client_order_id: str
    symbol: str
    side: str  # BUY | SELL
    quantity: Decimal
    reduce_only: bool
    orig_type: str = "MARKET"  # STOP_MARKET / TAKE_PROFIT_MARKET when an algo order made it
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    avg_price: Decimal = ZERO
    stop_price: Decimal = ZERO
    working_type: str = "CONTRACT_PRICE"
    time: int = 0
    update_time: int = 0
    pending_queries: int = 0  # queries still answered NEW before the fill shows

    def to_json(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id, "symbol": self.symbol, "status": self.status,
            "clientOrderId": self.client_order_id, "price": "0",
            "avgPrice": _s(self.avg_price), "origQty": _s(self.quantity),
            "executedQty": _s(self.executed_qty), "cumQty": _s(self.executed_qty),
            "cumQuote": _s(self.executed_qty * self.avg_price), "timeInForce": "GTC",
            "type": "MARKET", "reduceOnly": self.reduce_only, "closePosition": False,
            "side": self.side, "positionSide": "BOTH", "stopPrice": _s(self.stop_price),
            "workingType": self.working_type, "priceProtect": False,
            "origType": self.orig_type, "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
            "time": self.time, "updateTime": self.update_time,
        }


@dataclass
class FakeAlgoOrder:
    """A conditional order of the Algo Service (`/fapi/v1/algoOrder`)."""

    algo_id: int
    client_algo_id: str
    symbol: str
    side: str
    order_type: str  # STOP_MARKET | TAKE_PROFIT_MARKET
    quantity: Decimal
    trigger_price: Decimal
    working_type: str
    reduce_only: bool
    algo_status: str = "NEW"
    actual_order_id: str = ""
    actual_price: Decimal = ZERO
    create_time: int = 0
    update_time: int = 0
    trigger_time: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "algoId": self.algo_id, "clientAlgoId": self.client_algo_id,
            "algoType": "CONDITIONAL", "orderType": self.order_type, "symbol": self.symbol,
            "side": self.side, "positionSide": "BOTH", "timeInForce": "GTC",
            "quantity": _s(self.quantity), "algoStatus": self.algo_status,
            "actualOrderId": self.actual_order_id, "actualPrice": _s(self.actual_price),
            "triggerPrice": _s(self.trigger_price), "price": "0", "icebergQuantity": None,
            "tpTriggerPrice": "0", "tpPrice": "0", "slTriggerPrice": "0", "slPrice": "0",
            "tpOrderType": "", "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": self.working_type, "priceMatch": "NONE", "closePosition": False,
            "priceProtect": False, "reduceOnly": self.reduce_only,
            "createTime": self.create_time, "updateTime": self.update_time,
            "triggerTime": self.trigger_time, "goodTillDate": 0,
        }

    def triggered_by(self, price: Decimal) -> bool:
        if self.order_type == "STOP_MARKET":
            return price >= self.trigger_price if self.side == "BUY" \
                else price <= self.trigger_price
        return price <= self.trigger_price if self.side == "BUY" \
            else price >= self.trigger_price


@dataclass
class FakePosition:
    symbol: str
    amount: Decimal = ZERO  # signed: > 0 long, < 0 short
    entry_price: Decimal = ZERO
    update_time: int = 0

    def apply(self, signed_qty: Decimal, price: Decimal) -> Decimal:
        """A fill of `signed_qty` at `price`; returns the realised PnL."""
        if self.amount == 0 or (self.amount > 0) == (signed_qty > 0):
            total = abs(self.amount) + abs(signed_qty)
            self.entry_price = (abs(self.amount) * self.entry_price
                                + abs(signed_qty) * price) / total
            self.amount += signed_qty
            return ZERO
        closing = min(abs(signed_qty), abs(self.amount))
        realised = (price - self.entry_price) * closing * (1 if self.amount > 0 else -1)
        flips = abs(signed_qty) > abs(self.amount)
        self.amount += signed_qty
        if self.amount == 0:
            self.entry_price = ZERO
        elif flips:
            self.entry_price = price
        return realised


@dataclass
class FakeTrade:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    realized_pnl: Decimal
    time: int

    def to_json(self) -> dict[str, Any]:
        return {
            "buyer": self.side == "BUY", "commission": _s(self.commission),
            "commissionAsset": "USDT", "id": self.trade_id, "maker": False,
            "orderId": self.order_id, "price": _s(self.price), "qty": _s(self.qty),
            "quoteQty": _s(self.price * self.qty), "realizedPnl": _s(self.realized_pnl),
            "side": self.side, "positionSide": "BOTH", "symbol": self.symbol,
            "time": self.time,
        }


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
        # --- the account ---
        self.hedge_mode = False
        self.wallet_balance = Decimal("10000")
        self.taker_fee = Decimal("0.0004")
        self.market_fill_after_queries = 0  # > 0: market orders answer NEW, fill when queried
        self.prices: dict[str, Decimal] = {}  # last price: what market orders fill at
        self.marks: dict[str, Decimal] = {}  # mark price (MARK_PRICE triggers, PnL)
        self.margin_types: dict[str, str] = {}  # ISOLATED | CROSSED (default)
        self.leverages: dict[str, int] = {}  # default 20
        self.orders: dict[int, FakeOrder] = {}
        self.algo_orders: dict[int, FakeAlgoOrder] = {}
        self.positions: dict[str, FakePosition] = {}
        self.trades: list[FakeTrade] = []
        self._ids = itertools.count(8_389_765_000_000)
        # --- the server ---
        self._routes: dict[tuple[str, str], _Route] = {}
        self._failures: dict[tuple[str | None, str], _Injected] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.route("GET", "/fapi/v1/ping", lambda _: {})
        self.route("GET", "/fapi/v1/time", lambda _: {"serverTime": _now_ms()})
        self.route("GET", "/fapi/v1/exchangeInfo", self._exchange_info)
        self.route("GET", "/fapi/v1/leverageBracket", self._leverage_bracket, signed=True)
        for method, path, handler in (
            ("GET", "/fapi/v1/positionSide/dual", self._position_mode),
            ("POST", "/fapi/v1/marginType", self._margin_type),
            ("POST", "/fapi/v1/leverage", self._leverage),
            ("POST", "/fapi/v1/order", self._new_order),
            ("GET", "/fapi/v1/order", self._query_order),
            ("DELETE", "/fapi/v1/order", self._cancel_order),
            ("GET", "/fapi/v1/openOrders", self._open_orders),
            ("POST", "/fapi/v1/algoOrder", self._new_algo_order),
            ("GET", "/fapi/v1/algoOrder", self._query_algo_order),
            ("DELETE", "/fapi/v1/algoOrder", self._cancel_algo_order),
            ("GET", "/fapi/v1/openAlgoOrders", self._open_algo_orders),
            ("GET", "/fapi/v1/userTrades", self._user_trades),
            ("GET", "/fapi/v2/positionRisk", lambda r: self._position_risk(r, v2=True)),
            ("GET", "/fapi/v3/positionRisk", self._position_risk),
            ("GET", "/fapi/v2/account", lambda r: self._account(r, v2=True)),
            ("GET", "/fapi/v3/account", self._account),
            ("GET", "/fapi/v2/balance", self._balance),
        ):
            self.route(method, path, handler, signed=True)

    # --- set-up ----------------------------------------------------------------------------

    def add_symbol(self, symbol: str, *, tick: str, step: str, min_notional: str,
                   leverage_brackets: list[dict[str, Any]] | None = None,
                   price: float | str | None = None) -> None:
        self.symbols[symbol] = usdm_symbol(symbol, tick=tick, step=step,
                                           min_notional=min_notional)
        if leverage_brackets is not None:
            self.leverage_brackets[symbol] = leverage_brackets
        if price is not None:
            self.prices[symbol] = self.marks[symbol] = _d(price)

    def route(self, method: str, path: str, handler: Handler, *, signed: bool = False) -> None:
        """Answer `method path` with `handler` (replacing any earlier one)."""
        self._routes[(method.upper(), path)] = _Route(handler, signed)

    def fail(self, path: str, failure: Failure, times: int | None = None,
             method: str | None = None) -> None:
        """The next `times` requests to `path` (all of them if None) fail with `failure`; only
        those with `method` if given (`/fapi/v1/order` is POST, GET and DELETE)."""
        self._failures[(method.upper() if method else None, path)] = _Injected(failure, times)

    def heal(self, path: str | None = None) -> None:
        if path is None:
            self._failures.clear()
        else:
            for key in [key for key in self._failures if key[1] == path]:
                del self._failures[key]

    def received(self, path: str, method: str | None = None) -> list[Received]:
        return [r for r in self.requests
                if r.path == path and (method is None or r.method == method.upper())]

    def set_price(self, symbol: str, price: float | str, mark: float | str | None = None
                  ) -> list[FakeAlgoOrder]:
        """The symbol's last price (and mark price, the same unless given); resting
        conditional orders it crosses trigger and fill. Returns those that triggered."""
        self.prices[symbol] = _d(price)
        self.marks[symbol] = _d(mark if mark is not None else price)
        triggered = []
        for algo in list(self.algo_orders.values()):
            if algo.symbol != symbol or algo.algo_status != "NEW":
                continue
            if algo.triggered_by(self._reference(algo.symbol, algo.working_type)):
                self._trigger(algo)
                triggered.append(algo)
        return triggered

    def open_position(self, symbol: str, amount: float | str, entry_price: float | str, *,
                      leverage: int | None = None, margin_type: str = "ISOLATED") -> None:
        """A position the account holds already (opened elsewhere)."""
        self.positions[symbol] = FakePosition(symbol, _d(amount), _d(entry_price), _now_ms())
        self.margin_types[symbol] = margin_type
        if leverage is not None:
            self.leverages[symbol] = leverage
        self.prices.setdefault(symbol, _d(entry_price))
        self.marks.setdefault(symbol, _d(entry_price))

    def order_by_client_id(self, client_order_id: str) -> FakeOrder | None:
        return next((o for o in self.orders.values()
                     if o.client_order_id == client_order_id), None)

    def algo_by_client_id(self, client_algo_id: str) -> FakeAlgoOrder | None:
        return next((a for a in self.algo_orders.values()
                     if a.client_algo_id == client_algo_id), None)

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
        failure = self._take_failure(received)
        if failure is not None and not failure.processed:
            await self._hold(failure)
            if failure.reply is not None:
                return failure.reply
        reply = await self._handle(received)
        if failure is not None and failure.processed:
            await self._hold(failure)
            if failure.reply is not None:
                return failure.reply
        return reply

    def _take_failure(self, received: Received) -> Failure | None:
        for key in ((received.method, received.path), (None, received.path)):
            injected = self._failures.get(key)
            if injected is None:
                continue
            if injected.remaining is not None:
                injected.remaining -= 1
                if injected.remaining <= 0:
                    del self._failures[key]
            return injected.failure
        return None

    async def _hold(self, failure: Failure) -> None:
        if failure.delay_s:
            try:
                await asyncio.wait_for(self._closing.wait(), failure.delay_s)
            except TimeoutError:
                pass

    async def _handle(self, received: Received) -> Reply:
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

    # --- market data -----------------------------------------------------------------------

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

    # --- account settings ------------------------------------------------------------------

    def _position_mode(self, _: Received) -> dict[str, Any]:
        return {"dualSidePosition": self.hedge_mode}

    def _margin_type(self, received: Received) -> Reply | dict[str, Any]:
        symbol, refused = self._symbol_of(received)
        if refused:
            return refused
        wanted = received.params.get("marginType", "").upper()
        if wanted not in ("ISOLATED", "CROSSED"):
            return error(-1116 if wanted else -1102, "Invalid marginType.")
        if self.margin_types.get(symbol, "CROSSED") == wanted:
            return error(-4046, "No need to change margin type.")
        if self._position(symbol).amount != 0:
            return error(-4048, "Margin type cannot be changed if there exists position.")
        if any(o.symbol == symbol for o in self._open()) \
                or any(a.symbol == symbol for a in self._open_algo()):
            return error(-4047, "Margin type cannot be changed if there exists open orders.")
        self.margin_types[symbol] = wanted
        return {"code": 200, "msg": "success"}

    def _leverage(self, received: Received) -> Reply | dict[str, Any]:
        symbol, refused = self._symbol_of(received)
        if refused:
            return refused
        try:
            leverage = int(received.params["leverage"])
        except (KeyError, ValueError):
            return _mandatory("leverage")
        if not 1 <= leverage <= 125:
            return error(-4028, f"Leverage {leverage} is not valid")
        self.leverages[symbol] = leverage
        return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": symbol}

    # --- orders ----------------------------------------------------------------------------

    def _new_order(self, received: Received) -> Reply | dict[str, Any]:
        p = received.params
        symbol, refused = self._symbol_of(received)
        if refused:
            return refused
        kind = p.get("type", "").upper()
        if kind in CONDITIONAL_TYPES:
            return error(-4120, "Order type not supported for this endpoint. Please use the "
                                "Algo Order API endpoints instead.")
        if kind != "MARKET":
            return error(-1116, f"Invalid orderType (the fake fills MARKET orders only): "
                                f"{kind or 'missing'}.")
        checked = self._order_checks(received, "newClientOrderId", self.order_by_client_id)
        if isinstance(checked, Reply):
            return checked
        side, quantity, reduce_only, client_id = checked
        price = self.prices.get(symbol)
        if price is None:
            return error(-5000, f"fake Binance: no price set for {symbol} (set_price)", 500)
        if reduce_only:
            amount = self._position(symbol).amount
            if amount == 0 or (amount > 0) == (side == "BUY"):
                return error(-2022, "ReduceOnly Order is rejected.")
        else:
            refused = self._margin_check(symbol, side, quantity, price)
            if refused:
                return refused
        now = _now_ms()
        order = FakeOrder(next(self._ids), client_id, symbol, side, quantity, reduce_only,
                          time=now, update_time=now,
                          pending_queries=self.market_fill_after_queries)
        self.orders[order.order_id] = order
        if order.pending_queries <= 0:
            self._fill(order, price)
        return order.to_json()

    def _order_checks(self, received: Received, id_param: str,
                      existing: Callable[[str], Any]
                      ) -> Reply | tuple[str, Decimal, bool, str]:
        """What MARKET and conditional orders share: side, quantity, position mode, client id."""
        p = received.params
        symbol = p["symbol"]
        side = p.get("side", "").upper()
        if side not in ("BUY", "SELL"):
            return _mandatory("side") if not side else error(-1117, "Invalid side.")
        position_side = p.get("positionSide", "BOTH").upper()
        if (position_side == "BOTH") == self.hedge_mode:
            return error(-4061, "Order's position side does not match user's setting.")
        if "quantity" not in p:
            return _mandatory("quantity")
        quantity = _d(p["quantity"])
        if quantity <= 0:
            return error(-4003, "Quantity less than or equal to zero.")
        if quantity % _d(self._filter(symbol, "LOT_SIZE")["stepSize"]) != 0:
            return error(-1111, "Precision is over the maximum defined for this asset.")
        reduce_only = p.get("reduceOnly", "false").lower() == "true"
        client_id = p.get(id_param) or f"x-fake-{next(self._ids)}"
        if not CLIENT_ID.match(client_id):
            return error(-1100, f"Illegal characters found in parameter '{id_param}'; legal "
                                "range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
        if existing(client_id) is not None:
            return error(-4116, "ClientOrderId is duplicated.")
        return side, quantity, reduce_only, client_id

    def _margin_check(self, symbol: str, side: str, quantity: Decimal, price: Decimal
                      ) -> Reply | None:
        minimum = _d(self._filter(symbol, "MIN_NOTIONAL")["notional"])
        if quantity * price < minimum:
            return error(-4164, f"Order's notional must be no smaller than {_s(minimum)} "
                                "(unless you choose reduce only).")
        amount = self._position(symbol).amount
        opening = quantity if amount == 0 or (amount > 0) == (side == "BUY") \
            else max(ZERO, quantity - abs(amount))
        needed = opening * price / self._leverage_of(symbol) + quantity * price * self.taker_fee
        if needed > self._available():
            return error(-2019, "Margin is insufficient.")
        return None

    def _fill(self, order: FakeOrder, price: Decimal) -> None:
        position = self._position(order.symbol)
        quantity = order.quantity
        if order.reduce_only:
            quantity = min(quantity, abs(position.amount))
        now = _now_ms()
        order.update_time = now
        if quantity <= 0:
            order.status = "EXPIRED"
            return
        commission = quantity * price * self.taker_fee
        realised = position.apply(quantity if order.side == "BUY" else -quantity, price)
        position.update_time = now
        self.wallet_balance += realised - commission
        self.trades.append(FakeTrade(next(self._ids), order.order_id, order.symbol, order.side,
                                     price, quantity, commission, realised, now))
        order.executed_qty, order.avg_price = quantity, price
        order.status = "FILLED" if quantity == order.quantity else "EXPIRED"

    def _query_order(self, received: Received) -> Reply | dict[str, Any]:
        order, refused = self._find_order(received)
        if refused:
            return refused
        assert order is not None
        if order.status == "NEW" and order.pending_queries > 0:
            order.pending_queries -= 1
            if order.pending_queries == 0:
                self._fill(order, self.prices[order.symbol])
        return order.to_json()

    def _cancel_order(self, received: Received) -> Reply | dict[str, Any]:
        order, refused = self._find_order(received, unknown=(-2011, "Unknown order sent."))
        if refused:
            return refused
        assert order is not None
        if order.status != "NEW":
            return error(-2011, "Unknown order sent.")
        order.status, order.update_time = "CANCELED", _now_ms()
        return order.to_json()

    def _find_order(self, received: Received, unknown: tuple[int, str] = (
            -2013, "Order does not exist.")) -> tuple[FakeOrder | None, Reply | None]:
        symbol, refused = self._symbol_of(received)
        if refused:
            return None, refused
        p = received.params
        if "orderId" in p:
            order = self.orders.get(int(p["orderId"]))
        elif "origClientOrderId" in p:
            order = self.order_by_client_id(p["origClientOrderId"])
        else:
            return None, error(-1102, "Either orderId or origClientOrderId must be sent.")
        if order is None or order.symbol != symbol:
            return None, error(*unknown)
        return order, None

    def _open_orders(self, received: Received) -> list[dict[str, Any]]:
        symbol = received.params.get("symbol")
        return [o.to_json() for o in self._open() if symbol in (None, o.symbol)]

    def _open(self) -> list[FakeOrder]:
        return [o for o in self.orders.values() if o.status == "NEW"]

    # --- conditional (algo) orders ---------------------------------------------------------

    def _new_algo_order(self, received: Received) -> Reply | dict[str, Any]:
        p = received.params
        symbol, refused = self._symbol_of(received)
        if refused:
            return refused
        if p.get("algoType") != "CONDITIONAL":
            return _mandatory("algoType") if "algoType" not in p \
                else error(-1116, "Invalid algoType.")
        kind = p.get("type", "").upper()
        if kind not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            return error(-1116, f"Invalid orderType (the fake takes STOP_MARKET and "
                                f"TAKE_PROFIT_MARKET): {kind or 'missing'}.")
        if "triggerPrice" not in p:
            return _mandatory("triggerPrice")
        trigger = _d(p["triggerPrice"])
        if trigger <= 0 or trigger % _d(self._filter(symbol, "PRICE_FILTER")["tickSize"]) != 0:
            return error(-4014, "Price not increased by tick size.")
        working_type = p.get("workingType", "CONTRACT_PRICE").upper()
        if working_type not in ("MARK_PRICE", "CONTRACT_PRICE"):
            return error(-4031, "Invalid workingType.")
        checked = self._order_checks(received, "clientAlgoId", self.algo_by_client_id)
        if isinstance(checked, Reply):
            return checked
        side, quantity, reduce_only, client_id = checked
        now = _now_ms()
        algo = FakeAlgoOrder(next(self._ids), client_id, symbol, side, kind, quantity, trigger,
                             working_type, reduce_only, create_time=now, update_time=now)
        reference = self._reference(symbol, working_type, default=None)
        if reference is not None and algo.triggered_by(reference):
            return error(-2021, "Order would immediately trigger.")
        self.algo_orders[algo.algo_id] = algo
        return algo.to_json()

    def _trigger(self, algo: FakeAlgoOrder) -> None:
        now = _now_ms()
        order = FakeOrder(next(self._ids), f"x-fake-{algo.algo_id}", algo.symbol, algo.side,
                          algo.quantity, algo.reduce_only, orig_type=algo.order_type,
                          stop_price=algo.trigger_price, working_type=algo.working_type,
                          time=now, update_time=now)
        self.orders[order.order_id] = order
        self._fill(order, self.prices[algo.symbol])
        algo.algo_status = "FINISHED"
        algo.actual_order_id = str(order.order_id)
        algo.actual_price = order.avg_price
        algo.trigger_time = algo.update_time = now

    def _query_algo_order(self, received: Received) -> Reply | dict[str, Any]:
        algo, refused = self._find_algo(received, (-2013, "Order does not exist."))
        if refused:
            return refused
        assert algo is not None
        return algo.to_json()

    def _cancel_algo_order(self, received: Received) -> Reply | dict[str, Any]:
        algo, refused = self._find_algo(received, (-2011, "Unknown order sent."))
        if refused:
            return refused
        assert algo is not None
        if algo.algo_status != "NEW":
            return error(-2011, "Unknown order sent.")
        algo.algo_status, algo.update_time = "CANCELED", _now_ms()
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200",
                "msg": "success"}

    def _find_algo(self, received: Received, unknown: tuple[int, str]
                   ) -> tuple[FakeAlgoOrder | None, Reply | None]:
        p = received.params
        if "algoId" in p:
            algo = self.algo_orders.get(int(p["algoId"]))
        elif "clientAlgoId" in p:
            algo = self.algo_by_client_id(p["clientAlgoId"])
        else:
            return None, error(-1102, "Either algoId or clientAlgoId must be sent.")
        if algo is None or ("symbol" in p and algo.symbol != p["symbol"]):
            return None, error(*unknown)
        return algo, None

    def _open_algo_orders(self, received: Received) -> list[dict[str, Any]]:
        symbol = received.params.get("symbol")
        return [a.to_json() for a in self._open_algo() if symbol in (None, a.symbol)]

    def _open_algo(self) -> list[FakeAlgoOrder]:
        return [a for a in self.algo_orders.values() if a.algo_status == "NEW"]

    # --- fills, positions, balances --------------------------------------------------------

    def _user_trades(self, received: Received) -> Reply | list[dict[str, Any]]:
        symbol, refused = self._symbol_of(received)
        if refused:
            return refused
        order_id = received.params.get("orderId")
        return [t.to_json() for t in self.trades if t.symbol == symbol
                and (order_id is None or str(t.order_id) == order_id)]

    def _position_risk(self, received: Received, v2: bool = False) -> list[dict[str, Any]]:
        symbol = received.params.get("symbol")
        return [self._position_json(p, v2) for p in self.positions.values()
                if p.amount != 0 and symbol in (None, p.symbol)]

    def _position_json(self, position: FakePosition, v2: bool) -> dict[str, Any]:
        symbol = position.symbol
        mark = self.marks.get(symbol, position.entry_price)
        notional = position.amount * mark
        pnl = (mark - position.entry_price) * position.amount
        initial = abs(notional) / self._leverage_of(symbol)
        isolated = self.margin_types.get(symbol, "CROSSED") == "ISOLATED"
        wallet = abs(position.amount) * position.entry_price / self._leverage_of(symbol) \
            if isolated else ZERO
        mmr, cum = self._maintenance(symbol, abs(notional))
        liquidation = liquidation_price(
            "long" if position.amount > 0 else "short", float(abs(position.amount)),
            float(position.entry_price), float(wallet if isolated else self.wallet_balance),
            mmr, cum)
        data = {
            "symbol": symbol, "positionSide": "BOTH", "positionAmt": _s(position.amount),
            "entryPrice": _s(position.entry_price),
            "breakEvenPrice": _s(position.entry_price * (1 + self.taker_fee)),
            "markPrice": _s(mark), "unRealizedProfit": _s(pnl),
            "liquidationPrice": f"{liquidation:.8f}",
            "isolatedMargin": _s(wallet + pnl if isolated else ZERO),
            "notional": _s(notional), "marginAsset": "USDT", "isolatedWallet": _s(wallet),
            "initialMargin": _s(initial), "maintMargin": _s(abs(notional) * _d(mmr)),
            "positionInitialMargin": _s(initial), "openOrderInitialMargin": "0", "adl": 1,
            "bidNotional": "0", "askNotional": "0", "updateTime": position.update_time,
        }
        if v2:
            data |= {"leverage": str(self._leverage_of(symbol)),
                     "marginType": "isolated" if isolated else "cross",
                     "isAutoAddMargin": "false", "maxNotionalValue": "1000000"}
        return data

    def _account(self, _: Received, v2: bool = False) -> dict[str, Any]:
        positions = [self._position_json(p, v2) for p in self.positions.values()
                     if p.amount != 0]
        pnl = sum((_d(p["unRealizedProfit"]) for p in positions), ZERO)
        initial = sum((_d(p["initialMargin"]) for p in positions), ZERO)
        maintenance = sum((_d(p["maintMargin"]) for p in positions), ZERO)
        available = self._available()
        now = _now_ms()
        usdt = {
            "asset": "USDT", "walletBalance": _s(self.wallet_balance),
            "unrealizedProfit": _s(pnl), "marginBalance": _s(self.wallet_balance + pnl),
            "maintMargin": _s(maintenance), "initialMargin": _s(initial),
            "positionInitialMargin": _s(initial), "openOrderInitialMargin": "0",
            "crossWalletBalance": _s(self.wallet_balance), "crossUnPnl": _s(pnl),
            "availableBalance": _s(available), "maxWithdrawAmount": _s(available),
            "marginAvailable": True, "updateTime": now,
        }
        return {
            "totalInitialMargin": _s(initial), "totalMaintMargin": _s(maintenance),
            "totalWalletBalance": _s(self.wallet_balance), "totalUnrealizedProfit": _s(pnl),
            "totalMarginBalance": _s(self.wallet_balance + pnl),
            "totalPositionInitialMargin": _s(initial), "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": _s(self.wallet_balance), "totalCrossUnPnl": _s(pnl),
            "availableBalance": _s(available), "maxWithdrawAmount": _s(available),
            "assets": [usdt],
            "positions": [{
                "symbol": p["symbol"], "positionSide": "BOTH", "positionAmt": p["positionAmt"],
                "unrealizedProfit": p["unRealizedProfit"], "isolatedMargin": p["isolatedMargin"],
                "notional": p["notional"], "isolatedWallet": p["isolatedWallet"],
                "initialMargin": p["initialMargin"], "maintMargin": p["maintMargin"],
                "updateTime": p["updateTime"],
            } for p in positions],
        }

    def _balance(self, _: Received) -> list[dict[str, Any]]:
        account = self._account(_)
        return [{"accountAlias": "fake", "asset": "USDT",
                 "balance": account["totalWalletBalance"],
                 "crossWalletBalance": account["totalCrossWalletBalance"],
                 "crossUnPnl": account["totalCrossUnPnl"],
                 "availableBalance": account["availableBalance"],
                 "maxWithdrawAmount": account["maxWithdrawAmount"], "marginAvailable": True,
                 "updateTime": _now_ms()}]

    # --- helpers ---------------------------------------------------------------------------

    def _symbol_of(self, received: Received) -> tuple[str, Reply | None]:
        symbol = received.params.get("symbol")
        if not symbol:
            return "", _mandatory("symbol")
        if symbol not in self.symbols:
            return symbol, error(-1121, "Invalid symbol.")
        return symbol, None

    def _filter(self, symbol: str, kind: str) -> dict[str, Any]:
        return next(f for f in self.symbols[symbol]["filters"] if f["filterType"] == kind)

    def _position(self, symbol: str) -> FakePosition:
        return self.positions.setdefault(symbol, FakePosition(symbol))

    def _leverage_of(self, symbol: str) -> int:
        return self.leverages.get(symbol, 20)

    def _reference(self, symbol: str, working_type: str, default: Decimal | None = ZERO
                   ) -> Decimal | None:
        prices = self.marks if working_type == "MARK_PRICE" else self.prices
        return prices.get(symbol, default)

    def _available(self) -> Decimal:
        used, pnl = ZERO, ZERO
        for position in self.positions.values():
            if position.amount == 0:
                continue
            mark = self.marks.get(position.symbol, position.entry_price)
            used += abs(position.amount) * position.entry_price / self._leverage_of(
                position.symbol)
            pnl += (mark - position.entry_price) * position.amount
        return self.wallet_balance + min(pnl, ZERO) - used

    def _maintenance(self, symbol: str, notional: Decimal) -> tuple[float, float]:
        rows = self.leverage_brackets.get(symbol) or []
        chosen = (0.004, 0.0)
        for row in rows:
            if notional >= _d(row["notionalFloor"]):
                chosen = (float(row["maintMarginRatio"]), float(row["cum"]))
        return chosen


def _mandatory(name: str) -> Reply:
    return error(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or "
                        "malformed.")


def _d(value: float | str | Decimal) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _s(value: Decimal) -> str:
    """A decimal as Binance writes numbers: plain, no exponent, no trailing zeros."""
    text = format(value.normalize() if value else ZERO, "f")
    return text


def _without_signature(part: str) -> str:
    return "&".join(p for p in part.split("&") if p and not p.startswith("signature="))


def _now_ms() -> int:
    return int(time.time() * 1000)
