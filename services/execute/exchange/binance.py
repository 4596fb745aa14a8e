"""Binance USDⓈ-M through ccxt: the live and testnet exchange (execute.md, "Exchange adapters").

Everything goes through ccxt's async `binanceusdm` (`shared.exchange.binanceusdm`: rate limiter
on, sandbox for testnet, `BINANCE_API_BASE_URL`); no Binance REST call is written by hand.

Since December 2025 Binance takes conditional orders (STOP_MARKET, TAKE_PROFIT_MARKET) only on
its Algo Service (`/fapi/v1/algoOrder`, -4120 on `/fapi/v1/order`). ccxt routes a `create_order`
with a `stopPrice` there itself, renaming `newClientOrderId` to `clientAlgoId` and `stopPrice` to
`triggerPrice`; reading and cancelling such an order needs `trigger=True`. The protocol addresses
orders by client id alone, so this adapter asks the endpoint it expects first (conditional for
ids it placed as triggers) and the other one when the first has no such order. An algo order
that triggered has an `actualOrderId`: the MARKET order that filled, whose price, quantity and
commission are what the stop or target really did.

Error mapping. Placing an order: ccxt's network family (timeouts, 5xx, 429/-1003 rate limits,
DDoS protection, "execution status unknown" -1006/-1007, invalid nonce) → `ExchangeUnavailable`:
the outcome is unknown, resolve by client id, never resend; any other ccxt `ExchangeError`
(insufficient margin -2019, invalid order, reduce-only rejected, …) → `OrderRejected` with
Binance's code; -4116 (the client id exists) → that existing order. Reading and cancelling:
"no such order" (-2013, -2011) → None / nothing to do, any other failure → `ExchangeUnavailable`.
Start-up: hedge mode, or keys or settings Binance refuses → `TradingNotAllowed`. ccxt's class for
a code depends on the URL it called (its per-market tables only apply to binance.com hosts), so
the Binance code in the answer decides first.

Messages keep Binance's answer and ccxt's URL, never the API key or secret (they travel in a
header and the HMAC only); a GET's `signature` is masked all the same.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import ccxt.async_support as ccxt_async

from services.execute.exchange.base import (
    Balance,
    ExchangeOrder,
    ExchangePosition,
    ExchangeUnavailable,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderType,
    TradingNotAllowed,
)
from shared.exchange import QUOTE, binanceusdm, ccxt_symbol
from shared.observability.logging import get_logger

if TYPE_CHECKING:
    from shared.config import Settings

log = get_logger(__name__)

T = TypeVar("T")

SIGNATURE = re.compile(r"(signature=)[^&\s\"']+")
BINANCE_CODE = re.compile(r"""["']code["']\s*:\s*["']?(-?\d+)""")

# Binance codes whose outcome is unknown or transient, whatever class ccxt gives them.
UNKNOWN_OUTCOME = {-1000, -1001, -1003, -1006, -1007, -1008, -1015, -1021}
NO_SUCH_ORDER = {-2011, -2013}  # "Unknown order sent.", "Order does not exist."
NO_NEED_TO_CHANGE_MARGIN_TYPE = -4046
DUPLICATE_CLIENT_ORDER_ID = -4116

STATUSES = {
    "closed": OrderStatus.FILLED,
    "open": OrderStatus.OPEN,
    "canceling": OrderStatus.OPEN,
    "canceled": OrderStatus.CANCELED,
    "rejected": OrderStatus.REJECTED,
    "expired": OrderStatus.EXPIRED,
}
ALGO_DONE = {"TRIGGERED", "FINISHED"}  # the algo order placed its MARKET order

HEDGE_MODE_MESSAGE = (
    "The Binance USDⓈ-M account is in hedge mode (dualSidePosition=true). Phoenix 95 trades "
    "in one-way mode only (one position per symbol) and refuses to trade in hedge mode. Switch "
    "the account to one-way mode (Binance Futures → Preferences → Position Mode → One-way "
    "Mode; it cannot be changed while positions or open orders exist), then restart EXECUTE."
)


class BinanceExchange:
    """The live (or testnet) Binance USDⓈ-M account, one-way mode, isolated margin."""

    def __init__(self, settings: Settings, *, exchange: ccxt_async.binanceusdm | None = None,
                 fill_wait_s: float = 5.0, fee_timeout_s: float = 2.0) -> None:
        self.settings = settings
        self.exchange = exchange if exchange is not None else binanceusdm(settings)
        # Before start, open orders of all symbols come from one call without a symbol (see
        # fetch_open_orders); ccxt refuses that without this acknowledgement.
        self.exchange.options.setdefault("fetchOpenOrders", {})["warnWithoutSymbol"] = False
        self.fill_wait_s = fill_wait_s  # how long a market order may take to show as filled
        self.fee_timeout_s = fee_timeout_s  # reading a fill's commission, best effort
        self._configured: set[str] = set()  # margin type and leverage set, once per symbol
        self._leverage: dict[str, int] = {}
        self._triggers: set[str] = set()  # client ids this process placed as algo orders
        self._secrets = [s for s in (self.exchange.apiKey, self.exchange.secret) if s]

    # --- start-up --------------------------------------------------------------------------

    async def start(self, symbols: list[str], leverage: int) -> None:
        """Markets, the one-way check, then isolated margin and `leverage` per symbol (once).
        `TradingNotAllowed` when the account cannot be traded as configured (hedge mode,
        keys refused, settings refused); `ExchangeUnavailable` when Binance cannot be reached
        (calling it again carries on where it stopped)."""
        await self._startup("load_markets", self.exchange.load_markets())
        mode = await self._startup("fetch_position_mode", self.exchange.fetch_position_mode())
        if mode.get("hedged") is not False:
            if mode.get("hedged") is None:
                raise TradingNotAllowed(
                    f"Could not read the account's position mode (answer: {mode.get('info')!r})"
                    "; refusing to trade without knowing it is one-way mode.")
            raise TradingNotAllowed(HEDGE_MODE_MESSAGE)
        problems = []
        for symbol in dict.fromkeys(symbols):
            if symbol in self._configured:
                continue
            unified = self._unified(symbol)
            if unified is None:
                log.error("symbol not listed by the exchange; orders for it will be rejected",
                          symbol=symbol)
                continue
            problem = await self._configure(symbol, unified, leverage)
            if problem:
                problems.append(problem)
        if problems:
            raise TradingNotAllowed("Binance refused the account settings Phoenix 95 trades "
                                    "with (isolated margin, leverage): " + "; ".join(problems))
        log.info("exchange ready", mode=self.settings.exchange_mode.value, hedged=False,
                 symbols=sorted(self._configured), leverage=leverage)

    async def _startup(self, call: str, request: Awaitable[T]) -> T:
        try:
            return await request
        except ccxt_async.BaseError as exc:
            if _is_transient(exc):
                raise self._unavailable(call, exc) from exc
            raise TradingNotAllowed(
                f"Binance refused {call} ({self._describe(exc)}); check BINANCE_API_KEY and "
                "BINANCE_SECRET, that the key may trade USDⓈ-M futures, and its IP "
                "whitelist") from exc

    async def _configure(self, symbol: str, unified: str, leverage: int) -> str | None:
        """Isolated margin and `leverage` for one symbol; a refusal is returned, a network
        failure raised (the symbol is then set up on the next start)."""
        try:
            await self.exchange.set_margin_mode("isolated", unified)
        except ccxt_async.MarginModeAlreadySet:
            pass
        except ccxt_async.BaseError as exc:
            if _code_of(exc) != NO_NEED_TO_CHANGE_MARGIN_TYPE:
                if _is_transient(exc):
                    raise self._unavailable("set_margin_mode", exc) from exc
                return f"{symbol}: isolated margin: {self._describe(exc)}"
        try:
            await self.exchange.set_leverage(leverage, unified)
        except ccxt_async.BaseError as exc:
            if _is_transient(exc):
                raise self._unavailable("set_leverage", exc) from exc
            return f"{symbol}: leverage {leverage}: {self._describe(exc)}"
        self._configured.add(symbol)
        self._leverage[symbol] = leverage
        log.info("symbol set up", symbol=symbol, margin="isolated", leverage=leverage)
        return None

    # --- orders ----------------------------------------------------------------------------

    async def create_market_order(
        self, *, symbol: str, side: OrderSide, quantity: float, client_order_id: str,
        reduce_only: bool = False, reference_price: float | None = None,
    ) -> ExchangeOrder:
        unified = await self._listed(symbol)
        amount = self._amount(unified, quantity)
        params: dict[str, Any] = {"newClientOrderId": client_order_id}
        if reduce_only:
            params["reduceOnly"] = True
        try:
            raw = await self.exchange.create_order(unified, "market", side.value, amount,
                                                   None, params)
            order = await self._order_of(raw, symbol, unified)
        except ccxt_async.BaseError as exc:
            order = await self._duplicate(exc, "create_order", symbol, client_order_id)
        except Exception as exc:  # an answer ccxt or the mapping could not read: sent, unknown
            raise self._unavailable("create_order", exc) from exc
        log.info("market order sent", symbol=symbol, side=side.value, quantity=amount,
                 client_order_id=client_order_id, reduce_only=reduce_only,
                 status=order.status.value)
        if order.status is OrderStatus.OPEN:
            order = await self._await_fill(symbol, client_order_id)
        if order.status is not OrderStatus.FILLED and order.filled_quantity <= 0:
            raise OrderRejected(f"market order {client_order_id} {order.status.value} "
                                "without a fill")
        return order

    async def create_trigger_order(
        self, *, symbol: str, side: OrderSide, quantity: float, stop_price: float,
        type: OrderType, client_order_id: str,
    ) -> ExchangeOrder:
        if type not in (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET):
            raise ValueError(f"not a trigger order type: {type}")
        unified = await self._listed(symbol)
        amount = self._amount(unified, quantity)
        try:
            stop = self.exchange.price_to_precision(unified, stop_price)
        except ccxt_async.BaseError as exc:
            raise self._rejected("price_to_precision", exc) from exc
        params = {"stopPrice": stop, "reduceOnly": True, "workingType": "MARK_PRICE",
                  "newClientOrderId": client_order_id}
        self._triggers.add(client_order_id)
        try:
            raw = await self.exchange.create_order(unified, type.value, side.value, amount,
                                                   None, params)
            order = await self._order_of(raw, symbol, unified)
        except ccxt_async.BaseError as exc:
            order = await self._duplicate(exc, "create_order", symbol, client_order_id)
        except Exception as exc:
            raise self._unavailable("create_order", exc) from exc
        log.info("trigger order placed", symbol=symbol, side=side.value, type=type.value,
                 quantity=amount, stop_price=stop, client_order_id=client_order_id,
                 status=order.status.value)
        return order

    async def cancel_order(self, *, symbol: str, client_order_id: str) -> None:
        unified = await self._resolve(symbol)
        if unified is None:
            return
        for trigger in self._kinds(client_order_id):
            params: dict[str, Any] = ({"clientAlgoId": client_order_id, "trigger": True}
                                      if trigger else {"origClientOrderId": client_order_id})
            try:
                await self.exchange.cancel_order(None, unified, params)
            except ccxt_async.BaseError as exc:
                if _not_found(exc):
                    continue
                raise self._unavailable("cancel_order", exc) from exc
            log.info("order cancelled", symbol=symbol, client_order_id=client_order_id)
            return
        log.info("nothing to cancel: no open order with this client id", symbol=symbol,
                 client_order_id=client_order_id)

    async def fetch_order(self, *, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        unified = await self._resolve(symbol)
        if unified is None:
            return None
        for trigger in self._kinds(client_order_id):
            params: dict[str, Any] = ({"clientAlgoId": client_order_id, "trigger": True}
                                      if trigger else {"origClientOrderId": client_order_id})
            raw = await self._fetch_raw(unified, None, params)
            if raw is not None:
                return await self._order_of(raw, symbol, unified)
        return None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        """Resting orders, conditional ones included. Without `symbol`: those of every symbol
        set up at start, asked one symbol at a time (request weight 1 each, where Binance
        counts 40 for a call without a symbol, and ccxt's rate limiter makes every other call
        wait for it); before start, one call for all."""
        if symbol is not None:
            unified = await self._resolve(symbol)
            return await self._open_orders(unified) if unified is not None else []
        if not self._configured:
            return await self._open_orders(None)
        orders: list[ExchangeOrder] = []
        for configured in sorted(self._configured):
            unified = self._unified(configured)
            if unified is not None:
                orders += await self._open_orders(unified)
        return orders

    async def _open_orders(self, unified: str | None) -> list[ExchangeOrder]:
        regular = await self._read("fetch_open_orders",
                                   self.exchange.fetch_open_orders(unified))
        algo = await self._read("fetch_open_orders",
                                self.exchange.fetch_open_orders(unified, None, None,
                                                                {"trigger": True}))
        return [self._map(raw, _market_id(raw)) for raw in [*regular, *algo]]

    # --- account ---------------------------------------------------------------------------

    async def fetch_positions(self) -> list[ExchangePosition]:
        raw_positions = await self._read("fetch_positions", self.exchange.fetch_positions())
        positions = []
        for raw in raw_positions:
            info = raw.get("info") or {}
            quantity = abs(_float(raw.get("contracts")) or _float(info.get("positionAmt")) or 0)
            if quantity <= 0:
                continue
            symbol = _market_id(raw)
            side = raw.get("side") or ("long" if _float(info.get("positionAmt")) > 0
                                       else "short")
            positions.append(ExchangePosition(
                symbol=symbol, side=side, quantity=quantity,
                entry_price=_float(raw.get("entryPrice")) or _float(info.get("entryPrice")),
                leverage=self._position_leverage(symbol, raw, info),
                isolated_margin=(_float(info.get("isolatedWallet"))
                                 or _float(info.get("positionInitialMargin"))
                                 or _float(info.get("initialMargin"))),
                liquidation_price=_float(raw.get("liquidationPrice")) or None,
                mark_price=_float(raw.get("markPrice")) or None,
                unrealized_pnl=_float(raw.get("unrealizedPnl")),
            ))
        return positions

    async def fetch_balance(self) -> Balance:
        balance = await self._read("fetch_balance", self.exchange.fetch_balance())
        info = balance.get("info") or {}
        asset = next((a for a in info.get("assets") or [] if a.get("asset") == QUOTE), None)
        if asset is not None and asset.get("walletBalance") is not None:
            return Balance(wallet_balance=_float(asset["walletBalance"]),
                           unrealized_pnl=_float(asset.get("unrealizedProfit")))
        if info.get("totalWalletBalance") is not None:
            return Balance(wallet_balance=_float(info["totalWalletBalance"]),
                           unrealized_pnl=_float(info.get("totalUnrealizedProfit")))
        raise ExchangeUnavailable(f"fetch_balance: no {QUOTE} wallet balance in the answer")

    async def on_tick(self, symbol: str, price: float, mark_price: float | None
                      ) -> list[ExchangeOrder]:
        return []  # Binance triggers stops and targets itself

    async def close(self) -> None:
        await self.exchange.close()

    # --- reading orders --------------------------------------------------------------------

    def _kinds(self, client_order_id: str) -> tuple[bool, bool]:
        """Which endpoint to ask first: conditional (True) for ids placed as triggers."""
        return (True, False) if client_order_id in self._triggers else (False, True)

    async def _fetch_raw(self, unified: str, order_id: str | None, params: dict[str, Any]
                         ) -> dict[str, Any] | None:
        """ccxt's order, or None when Binance has no such order."""
        try:
            return await self.exchange.fetch_order(order_id, unified, params)
        except ccxt_async.BaseError as exc:
            if _not_found(exc):
                return None
            raise self._unavailable("fetch_order", exc) from exc

    async def _await_fill(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        """A market order answered before it filled: asked for by client id until it is
        done, for `fill_wait_s`; still open (or unreadable) then: the outcome is unknown."""
        deadline = time.monotonic() + self.fill_wait_s
        pause = 0.1
        last: ExchangeOrder | None = None
        while True:
            await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
            try:
                last = await self.fetch_order(symbol=symbol, client_order_id=client_order_id)
            except ExchangeUnavailable as exc:
                log.warning("market order not read yet", client_order_id=client_order_id,
                            error=str(exc))
            if last is not None and last.status is not OrderStatus.OPEN:
                return last
            if time.monotonic() >= deadline:
                raise ExchangeUnavailable(
                    f"market order {client_order_id} not filled after {self.fill_wait_s:g} s "
                    f"(last seen: {last.status.value if last else 'not found'}); resolve it "
                    "by its client id")
            pause = min(pause * 2, 1.0)

    async def _duplicate(self, exc: ccxt_async.BaseError, call: str, symbol: str,
                         client_order_id: str) -> ExchangeOrder:
        """Binance already has an order with this client id (-4116): that order is ours,
        sent before; it is returned rather than refused. Any other error is translated."""
        if _code_of(exc) == DUPLICATE_CLIENT_ORDER_ID:
            existing = await self.fetch_order(symbol=symbol, client_order_id=client_order_id)
            if existing is not None:
                log.warning("order already on the exchange; not sent again",
                            client_order_id=client_order_id, status=existing.status.value)
                return existing
        if _is_transient(exc):
            raise self._unavailable(call, exc) from exc
        raise self._rejected(call, exc) from exc

    async def _order_of(self, raw: dict[str, Any], symbol: str, unified: str) -> ExchangeOrder:
        """ccxt's order as ours; a triggered algo order with its MARKET order's fill, and a
        fill with its commission."""
        info = raw.get("info") or {}
        actual = None
        if info.get("algoStatus") in ALGO_DONE and info.get("actualOrderId"):
            actual = await self._fetch_raw(unified, str(info["actualOrderId"]), {})
        order = self._map(raw, symbol, actual)
        if order.filled_quantity > 0 and order.fee == 0:
            filled_id = (str(info.get("actualOrderId") or "") if "algoId" in info
                         else order.exchange_order_id)
            fee = await self._commission(unified, filled_id)
            if fee:
                order = _replace(order, fee=fee)
        return order

    async def _commission(self, unified: str, order_id: str) -> float:
        """What Binance charged for an order's fills (USDT), from its trades; 0 if unread."""
        if not order_id:
            return 0.0
        try:
            trades = await asyncio.wait_for(
                self.exchange.fetch_my_trades(unified, None, None, {"orderId": order_id}),
                self.fee_timeout_s)
        except (TimeoutError, ccxt_async.BaseError) as exc:
            log.warning("commission not read; 0 recorded", order_id=order_id,
                        error=self._describe(exc))
            return 0.0
        return sum(_fee_cost(trade.get("fee")) for trade in trades
                   if str((trade.get("info") or {}).get("orderId", order_id)) == order_id)

    def _map(self, raw: dict[str, Any], symbol: str, actual: dict[str, Any] | None = None
             ) -> ExchangeOrder:
        info = raw.get("info") or {}
        status = STATUSES.get(raw.get("status") or "", OrderStatus.OPEN)
        filled = _float(raw.get("filled"))
        average = _float(raw.get("average")) or None
        fee = _fee_of(raw)
        updated = raw.get("lastUpdateTimestamp") or raw.get("timestamp")
        if info.get("algoStatus") in ALGO_DONE:
            if actual is not None:
                status = STATUSES.get(actual.get("status") or "", OrderStatus.OPEN)
                filled = _float(actual.get("filled"))
                average = _float(actual.get("average")) or None
                fee = _fee_of(actual)
                updated = actual.get("lastUpdateTimestamp") or actual.get("timestamp") \
                    or updated
            elif info.get("algoStatus") == "FINISHED" and _float(info.get("actualPrice")) > 0:
                status, filled = OrderStatus.FILLED, _float(raw.get("amount"))
                average = _float(info.get("actualPrice"))
            else:
                status = OrderStatus.OPEN  # triggered; its MARKET order is not readable yet
        return ExchangeOrder(
            client_order_id=str(raw.get("clientOrderId") or ""),
            exchange_order_id=str(raw.get("id") or ""),
            symbol=info.get("symbol") or symbol,
            side=OrderSide(str(raw.get("side") or info.get("side") or "").lower()),
            type=_type_of(info),
            status=status,
            quantity=_float(raw.get("amount")),
            filled_quantity=filled,
            average_price=average,
            stop_price=_float(raw.get("triggerPrice")) or _float(info.get("stopPrice")) or None,
            reduce_only=bool(raw.get("reduceOnly")),
            fee=fee,
            updated_at=(datetime.fromtimestamp(updated / 1000, UTC) if updated
                        else datetime.now(UTC)),
        )

    # --- helpers ---------------------------------------------------------------------------

    async def _resolve(self, symbol: str) -> str | None:
        """`_unified`, with the markets loaded first if they are not yet (a call before
        `start` must not take "not loaded" for "not listed")."""
        if not self.exchange.markets:
            await self._read("load_markets", self.exchange.load_markets())
        return self._unified(symbol)

    def _unified(self, symbol: str) -> str | None:
        """ccxt's symbol of a Binance USDⓈ-M perpetual (`BTCUSDT`), if listed."""
        for market in (self.exchange.markets_by_id or {}).get(symbol, []):
            if market.get("swap") and market.get("linear"):
                return market["symbol"]
        unified = ccxt_symbol(symbol)
        return unified if unified in (self.exchange.markets or {}) else None

    async def _listed(self, symbol: str) -> str:
        unified = await self._resolve(symbol)
        if unified is None:
            raise OrderRejected(f"{symbol} is not a listed Binance USDⓈ-M perpetual")
        return unified

    def _amount(self, unified: str, quantity: float) -> float:
        try:
            return float(self.exchange.amount_to_precision(unified, quantity))
        except ccxt_async.BaseError as exc:
            raise self._rejected("amount_to_precision", exc) from exc

    def _position_leverage(self, symbol: str, raw: dict[str, Any], info: dict[str, Any]
                           ) -> int:
        leverage = _float(raw.get("leverage")) or _float(info.get("leverage"))
        if not leverage:  # /fapi/v3/positionRisk leaves it out: notional / initial margin
            margin = _float(info.get("positionInitialMargin")) or _float(
                info.get("initialMargin"))
            if margin:
                leverage = abs(_float(info.get("notional"))) / margin
        if leverage:
            return max(1, round(leverage))
        return self._leverage.get(symbol, self.settings.leverage)

    async def _read(self, call: str, request: Awaitable[T]) -> T:
        """A call that changes nothing: whatever fails, the account could not be read."""
        try:
            return await request
        except ccxt_async.BaseError as exc:
            raise self._unavailable(call, exc) from exc

    def _describe(self, exc: BaseException) -> str:
        text = SIGNATURE.sub(r"\1***", f"{type(exc).__name__}: {exc}")
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:500]

    def _message(self, call: str, exc: BaseException) -> str:
        return f"{call}: {self._describe(exc)}"

    def _unavailable(self, call: str, exc: BaseException) -> ExchangeUnavailable:
        message = self._message(call, exc)
        log.warning("exchange unavailable", call=call, error=message)
        return ExchangeUnavailable(message)

    def _rejected(self, call: str, exc: BaseException) -> OrderRejected:
        code = _code_of(exc)
        message = self._message(call, exc)
        log.warning("order rejected by the exchange", call=call, code=code, error=message)
        return OrderRejected(message, str(code) if code is not None else None)


def _code_of(exc: BaseException) -> int | None:
    """Binance's error code in ccxt's message (which carries the answer's body)."""
    match = BINANCE_CODE.search(str(exc))
    return int(match.group(1)) if match else None


def _is_transient(exc: BaseException) -> bool:
    """Network, timeout, 5xx, rate limit, "status unknown": the outcome is not known."""
    if _code_of(exc) in UNKNOWN_OUTCOME:
        return True
    return isinstance(exc, ccxt_async.OperationFailed) or not isinstance(
        exc, ccxt_async.ExchangeError)


def _not_found(exc: BaseException) -> bool:
    code = _code_of(exc)
    return code in NO_SUCH_ORDER or (code is None and isinstance(exc, ccxt_async.OrderNotFound))


def _type_of(info: dict[str, Any]) -> OrderType:
    """STOP_MARKET / TAKE_PROFIT_MARKET from Binance's own fields (ccxt folds them into
    'market'): `origType` of a triggered order, `orderType` of an algo order, else `type`."""
    for key in ("origType", "orderType", "type", "strategyType"):
        value = str(info.get(key) or "").upper()
        if value in OrderType.__members__:
            if value == OrderType.MARKET and key == "origType":
                continue  # a plain market order; a liquidation says so in `type`
            return OrderType(value)
    return OrderType.MARKET


def _fee_of(raw: dict[str, Any]) -> float:
    fees = raw.get("fees") or ([raw["fee"]] if raw.get("fee") else [])
    return sum(_fee_cost(fee) for fee in fees)


def _fee_cost(fee: dict[str, Any] | None) -> float:
    if not fee or fee.get("currency") not in (None, QUOTE):
        return 0.0
    return _float(fee.get("cost"))


def _float(value: Any) -> float:
    try:
        return float(value) if value is not None and value != "" else 0.0
    except (TypeError, ValueError):
        return 0.0


def _market_id(raw: dict[str, Any]) -> str:
    """Binance's symbol (`BTCUSDT`) of a ccxt order or position."""
    info = raw.get("info") or {}
    return info.get("symbol") or str(raw.get("symbol") or "").split(":")[0].replace("/", "")


def _replace(order: ExchangeOrder, **changes: Any) -> ExchangeOrder:
    from dataclasses import replace

    return replace(order, **changes)
