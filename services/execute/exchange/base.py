"""What EXECUTE needs of an exchange (execute.md, "Exchange adapters").

Binance USDⓈ-M vocabulary: one-way mode (one position per symbol), isolated margin, market
orders for entries and closes, STOP_MARKET / TAKE_PROFIT_MARKET protective orders that are
reduce-only and triggered on the mark price. Orders are addressed by our client order id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "MARKET"
    STOP_MARKET = "STOP_MARKET"
    TAKE_PROFIT_MARKET = "TAKE_PROFIT_MARKET"
    LIQUIDATION = "LIQUIDATION"  # the exchange closed the position itself


class OrderStatus(StrEnum):
    OPEN = "open"  # resting (protective orders)
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ExchangeOrder:
    client_order_id: str
    exchange_order_id: str
    symbol: str  # BTCUSDT
    side: OrderSide
    type: OrderType
    status: OrderStatus
    quantity: float
    filled_quantity: float
    average_price: float | None
    stop_price: float | None
    reduce_only: bool
    fee: float  # USDT paid for what filled
    updated_at: datetime


@dataclass(frozen=True)
class ExchangePosition:
    symbol: str
    side: str  # "long" | "short"
    quantity: float  # > 0
    entry_price: float
    leverage: int
    isolated_margin: float
    liquidation_price: float | None
    mark_price: float | None
    unrealized_pnl: float


@dataclass(frozen=True)
class Balance:
    wallet_balance: float  # USDT, realised
    unrealized_pnl: float

    @property
    def equity(self) -> float:
        return self.wallet_balance + self.unrealized_pnl


class ExchangeError(Exception):
    """Base of what an exchange call can raise."""


class ExchangeUnavailable(ExchangeError):
    """Timeout, network error, 5xx, rate limit: the outcome is unknown; resolve, never resend."""


class OrderRejected(ExchangeError):
    """The exchange refused the order for good (e.g. insufficient margin)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TradingNotAllowed(ExchangeError):
    """The account cannot be traded as configured (e.g. hedge mode); a clear message says why."""


class Exchange(Protocol):
    async def start(self, symbols: list[str], leverage: int) -> None:
        """Start-up checks and settings: one-way mode, isolated margin, leverage per symbol."""

    async def create_market_order(
        self, *, symbol: str, side: OrderSide, quantity: float, client_order_id: str,
        reduce_only: bool = False, reference_price: float | None = None,
    ) -> ExchangeOrder:
        """A market order; returns it filled, or raises OrderRejected / ExchangeUnavailable.
        `reference_price` is what the paper exchange fills at when it has no tick yet."""

    async def create_trigger_order(
        self, *, symbol: str, side: OrderSide, quantity: float, stop_price: float,
        type: OrderType, client_order_id: str,
    ) -> ExchangeOrder:
        """A resting STOP_MARKET or TAKE_PROFIT_MARKET, reduce-only, on the mark price."""

    async def cancel_order(self, *, symbol: str, client_order_id: str) -> None:
        """Cancel a resting order; an order already gone (filled, cancelled) is no error."""

    async def fetch_order(self, *, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """The order with our client id, or None if the exchange never received it."""

    async def fetch_open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]: ...

    async def fetch_positions(self) -> list[ExchangePosition]: ...

    async def fetch_balance(self) -> Balance: ...

    async def on_tick(self, symbol: str, price: float, mark_price: float | None
                      ) -> list[ExchangeOrder]:
        """Orders the exchange filled because of this price (paper: resting stops, targets and
        liquidations; a real exchange triggers them itself and returns nothing here)."""

    async def close(self) -> None: ...
