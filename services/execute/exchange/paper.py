"""The paper exchange: a simulated Binance USDⓈ-M account, isolated margin, one-way mode
(execute.md, "Exchange adapters", `paper`).

- Market orders fill at the last price (before any tick: the caller's reference price) moved
  by `PAPER_SLIPPAGE_BPS` against the taker and rounded to the price tick; the taker fee is
  charged on the notional and debited from the wallet.
- Opening or increasing locks isolated margin = notional / leverage; closing credits the
  realised PnL `s × (exit − entry) × qty` and releases the margin pro rata. An order opposite
  to the position reduces it, closes it, or (unless reduce-only) flips it.
- STOP_MARKET and TAKE_PROFIT_MARKET orders are reduce-only, rest, and trigger on the mark
  price (Binance's rule by side: a SELL stop when mark ≤ stop, a BUY stop when mark ≥ stop, a
  take-profit the other way); they fill at the last price for at most the position's size,
  and expire if there is nothing left to reduce when they trigger.
- A position whose mark price crosses its liquidation price (risk.md's formula, bundled
  brackets) is liquidated at that price: its isolated margin is lost and the open orders of
  the symbol are cancelled, as Binance does.

The account, orders and positions live in the `paper_*` tables, so a restart loses nothing.
In memory: the last and mark prices, and an index of the positions and resting orders per
symbol, loaded at start and updated after every commit, so that a tick which fills nothing
touches no database. One PaperExchange per database at a time (EXECUTE's single process).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.execute.exchange.base import (
    Balance,
    ExchangeOrder,
    ExchangePosition,
    ExchangeUnavailable,
    OrderRejected,
    OrderSide,
    OrderStatus,
    OrderType,
)
from services.execute.models import PaperAccount, PaperOrder, PaperPosition
from services.execute.settings import ExecuteSettings
from shared.brackets import BUNDLED, FALLBACK, bracket_for
from shared.instruments import PAPER_PRECISION, Precision, round_to_tick
from shared.liquidation import liquidation_price

log = logging.getLogger(__name__)

ACCOUNT_ID = 1
# A symbol missing from PAPER_PRECISION: Binance's most common step and minimum notional.
FALLBACK_PRECISION = Precision(price_tick=0.0, quantity_step=0.001, min_notional=5.0)
MONEY_DECIMALS = 8  # Binance keeps USDT amounts to 8 decimals
TRIGGER_TYPES = (OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET)

# Binance's error codes and messages for the rejections the paper exchange imitates.
DUPLICATE = ("-4116", "ClientOrderId is duplicated.")
INSUFFICIENT_MARGIN = ("-2019", "Margin is insufficient.")
REDUCE_ONLY_REJECTED = ("-2022", "ReduceOnly Order is rejected.")
IMMEDIATE_TRIGGER = ("-2021", "Order would immediately trigger.")
MAX_POSITION = ("-2027", "Exceeded the maximum allowable position at current leverage.")
QUANTITY_ZERO = ("-4003", "Quantity less than or equal to zero.")
STOP_PRICE_ZERO = ("-4006", "Stop price less than or equal to zero.")
INVALID_TYPE = ("-1116", "Invalid orderType.")


def _reject(error: tuple[str, str], detail: str = "") -> OrderRejected:
    code, message = error
    return OrderRejected(f"{message}{' ' + detail if detail else ''}", code=code)


def _now() -> datetime:
    return datetime.now(UTC)


def _money(value: float) -> float:
    return round(value, MONEY_DECIMALS)


def _direction(side: str) -> int:
    """+1 for a long or a buy, −1 for a short or a sell."""
    return 1 if side in ("long", OrderSide.BUY) else -1


@dataclass(frozen=True)
class _Position:
    symbol: str
    side: str  # long | short
    quantity: float
    entry_price: float
    leverage: int
    isolated_margin: float
    liquidation_price: float


@dataclass(frozen=True)
class _Resting:
    client_order_id: str
    side: OrderSide
    type: OrderType
    stop_price: float
    created_at: datetime


@dataclass(frozen=True)
class _Fill:
    filled: float
    fee: float
    realized_pnl: float
    wallet: float
    position: _Position | None  # after the fill


def _triggers(side: OrderSide, type_: OrderType, stop_price: float, mark: float) -> bool:
    """Binance's trigger rule, by side: a SELL stop (a long's stop-loss) when mark ≤ stop, a BUY
    stop when mark ≥ stop; a take-profit the other way."""
    falling = (side == OrderSide.SELL) == (type_ == OrderType.STOP_MARKET)
    return mark <= stop_price if falling else mark >= stop_price


class PaperExchange:
    """The `Exchange` protocol on a simulated account kept in the database."""

    def __init__(self, settings: ExecuteSettings,
                 sessions: async_sessionmaker[AsyncSession]) -> None:
        self._settings = settings
        self._sessions = sessions
        self._leverage = settings.leverage
        self._lock = asyncio.Lock()
        self._loaded = False
        self._last: dict[str, float] = {}
        self._mark: dict[str, float] = {}
        self._positions: dict[str, _Position] = {}
        self._resting: dict[str, dict[str, _Resting]] = {}
        # Per symbol, from its resting orders: the highest stop that triggers on a falling
        # mark and the lowest that triggers on a rising one. A tick compares the mark with
        # these two instead of every resting order; dropped whenever `_resting` changes.
        self._bounds: dict[str, tuple[float, float]] = {}

    # --- life cycle -------------------------------------------------------------------

    async def start(self, symbols: list[str], leverage: int) -> None:
        """Creates the account with the starting balance if it does not exist yet, loads the
        positions and resting orders, and remembers the leverage of new positions."""
        self._leverage = leverage
        await self._ensure_loaded()

    async def close(self) -> None:
        """Nothing to release: the sessions belong to the caller."""

    async def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        async with self._lock:
            if self._loaded:
                return
            async with self._database() as session, session.begin():
                if await session.get(PaperAccount, ACCOUNT_ID) is None:
                    session.add(PaperAccount(id=ACCOUNT_ID,
                                             wallet_balance=self._settings.paper_starting_balance,
                                             updated_at=_now()))
                    log.info("paper account created with %.2f USDT",
                             self._settings.paper_starting_balance)
                rows = (await session.scalars(select(PaperPosition))).all()
                resting = (await session.scalars(
                    select(PaperOrder).where(PaperOrder.status == OrderStatus.OPEN))).all()
            self._positions = {row.symbol: self._position_of(row) for row in rows}
            self._resting, self._bounds = {}, {}
            for order in resting:
                self._index(order.symbol, self._resting_of(order))
            self._loaded = True

    # --- orders -----------------------------------------------------------------------

    async def create_market_order(
        self, *, symbol: str, side: OrderSide, quantity: float, client_order_id: str,
        reduce_only: bool = False, reference_price: float | None = None,
    ) -> ExchangeOrder:
        side = OrderSide(side)
        await self._ensure_loaded()
        async with self._lock:
            precision = self._precision(symbol)
            qty = self._floor_to_step(quantity, precision.quantity_step)
            if qty <= 0:
                raise _reject(QUANTITY_ZERO, f"({quantity} {symbol}, step "
                                             f"{precision.quantity_step})")
            price = self._last.get(symbol) or reference_price
            if not price or price <= 0:
                raise OrderRejected(
                    f"paper exchange: no price for {symbol} yet (no tick received and no "
                    "reference price given); cannot fill a market order", code=None)
            if not reduce_only and qty * price < precision.min_notional:
                raise OrderRejected(
                    f"Order's notional must be no smaller than {precision.min_notional:g} "
                    "(unless you choose reduce only).", code="-4164")
            fill_price = self._slipped(symbol, side, price)
            now = _now()
            async with self._database() as session, session.begin():
                await self._reject_duplicate(session, client_order_id)
                account = await self._account(session)
                rows = {row.symbol: row for row in (await session.scalars(
                    select(PaperPosition).with_for_update())).all()}
                row = rows.get(symbol)
                other_margins = sum(r.isolated_margin for s, r in rows.items() if s != symbol)
                fill = self._fill(
                    symbol=symbol, side=side, quantity=qty, price=fill_price,
                    reduce_only=reduce_only, wallet=account.wallet_balance,
                    position=self._position_of(row) if row else None,
                    other_margins=other_margins)
                order = PaperOrder(
                    client_order_id=client_order_id, exchange_order_id=self._new_id(),
                    symbol=symbol, side=side.value, type=OrderType.MARKET.value,
                    status=OrderStatus.FILLED.value, quantity=qty,
                    filled_quantity=fill.filled, average_price=fill_price, stop_price=None,
                    reduce_only=reduce_only, fee=fill.fee, created_at=now, updated_at=now)
                session.add(order)
                await self._apply(session, account, row, fill, symbol, now)
                result = self._order_of(order)
            self._positions_after(symbol, fill.position)
            log.info("paper %s %s %s%s @ %s fee %s", symbol, side.value, fill.filled,
                     " reduce-only" if reduce_only else "", fill_price, fill.fee)
            return result

    async def create_trigger_order(
        self, *, symbol: str, side: OrderSide, quantity: float, stop_price: float,
        type: OrderType, client_order_id: str,
    ) -> ExchangeOrder:
        side, type_ = OrderSide(side), OrderType(type)
        if type_ not in TRIGGER_TYPES:
            raise _reject(INVALID_TYPE, f"({type_.value} is not a trigger order type)")
        await self._ensure_loaded()
        async with self._lock:
            qty = self._floor_to_step(quantity, self._precision(symbol).quantity_step)
            if qty <= 0:
                raise _reject(QUANTITY_ZERO, f"({quantity} {symbol})")
            if not stop_price or stop_price <= 0:
                raise _reject(STOP_PRICE_ZERO)
            mark = self._mark.get(symbol)
            if mark is not None and _triggers(side, type_, stop_price, mark):
                raise _reject(IMMEDIATE_TRIGGER,
                              f"({type_.value} {side.value} at {stop_price}, mark {mark})")
            now = _now()
            async with self._database() as session, session.begin():
                await self._reject_duplicate(session, client_order_id)
                order = PaperOrder(
                    client_order_id=client_order_id, exchange_order_id=self._new_id(),
                    symbol=symbol, side=side.value, type=type_.value,
                    status=OrderStatus.OPEN.value, quantity=qty, filled_quantity=0.0,
                    average_price=None, stop_price=stop_price, reduce_only=True, fee=0.0,
                    created_at=now, updated_at=now)
                session.add(order)
                result, resting = self._order_of(order), self._resting_of(order)
            self._index(symbol, resting)
            return result

    async def cancel_order(self, *, symbol: str, client_order_id: str) -> None:
        await self._ensure_loaded()
        async with self._lock:
            async with self._database() as session, session.begin():
                order = await session.get(PaperOrder, client_order_id, with_for_update=True)
                if (order is None or order.symbol != symbol
                        or order.status != OrderStatus.OPEN.value):
                    return
                order.status = OrderStatus.CANCELED.value
                order.updated_at = _now()
            self._unindex_resting(symbol, client_order_id)

    async def fetch_order(self, *, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        async with self._database() as session:
            order = await session.get(PaperOrder, client_order_id)
        if order is None or order.symbol != symbol:
            return None
        return self._order_of(order)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        query = select(PaperOrder).where(PaperOrder.status == OrderStatus.OPEN.value)
        if symbol is not None:
            query = query.where(PaperOrder.symbol == symbol)
        async with self._database() as session:
            rows = (await session.scalars(query.order_by(PaperOrder.created_at))).all()
        return [self._order_of(row) for row in rows]

    # --- account ----------------------------------------------------------------------

    async def fetch_positions(self) -> list[ExchangePosition]:
        async with self._database() as session:
            rows = (await session.scalars(select(PaperPosition)
                                          .order_by(PaperPosition.symbol))).all()
        return [self._exchange_position(self._position_of(row)) for row in rows]

    async def fetch_balance(self) -> Balance:
        async with self._database() as session:
            account = await session.get(PaperAccount, ACCOUNT_ID)
            rows = (await session.scalars(select(PaperPosition))).all()
        wallet = account.wallet_balance if account else self._settings.paper_starting_balance
        unrealized = sum(self._exchange_position(self._position_of(row)).unrealized_pnl
                         for row in rows)
        return Balance(wallet_balance=wallet, unrealized_pnl=_money(unrealized))

    # --- market data ------------------------------------------------------------------

    async def on_tick(self, symbol: str, price: float, mark_price: float | None
                      ) -> list[ExchangeOrder]:
        """Records the prices; liquidates a position whose mark crossed its liquidation price,
        then fills (or expires) the resting orders the mark price triggered. Returns the
        orders filled. Without a position or resting order on the symbol: no I/O at all."""
        if not self._loaded:
            await self._ensure_loaded()
        mark = mark_price if mark_price else price
        self._last[symbol] = price
        self._mark[symbol] = mark
        if not self._due(symbol, mark):
            return []
        async with self._lock:
            filled: list[ExchangeOrder] = []
            position = self._positions.get(symbol)
            if position is not None and self._liquidates(position, mark):
                filled.append(await self._liquidate(position))
            resting = sorted(
                (order for order in self._resting.get(symbol, {}).values()
                 if _triggers(order.side, order.type, order.stop_price, mark)),
                key=lambda order: order.created_at)
            for order in resting:
                result = await self._trigger(symbol, order.client_order_id, price)
                if result is not None:
                    filled.append(result)
            return filled

    def _due(self, symbol: str, mark: float) -> bool:
        """Whether this mark price liquidates or triggers anything (memory only): the same
        answer as `_triggers` over every resting order of the symbol, in two comparisons."""
        position = self._positions.get(symbol)
        if position is not None and self._liquidates(position, mark):
            return True
        bounds = self._bounds.get(symbol)
        if bounds is None:
            bounds = self._bounds[symbol] = self._trigger_bounds(symbol)
        return mark <= bounds[0] or mark >= bounds[1]

    def _trigger_bounds(self, symbol: str) -> tuple[float, float]:
        """(highest stop triggered by mark ≤ stop, lowest stop triggered by mark ≥ stop) of
        the symbol's resting orders; (−∞, +∞) without any. Explicit comparisons, so that a
        stop no comparison can trigger (NaN) is left out, as `_triggers` leaves it."""
        falling, rising = float("-inf"), float("inf")
        for order in self._resting.get(symbol, {}).values():
            if (order.side == OrderSide.SELL) == (order.type == OrderType.STOP_MARKET):
                if order.stop_price > falling:
                    falling = order.stop_price
            elif order.stop_price < rising:
                rising = order.stop_price
        return falling, rising

    @staticmethod
    def _liquidates(position: _Position, mark: float) -> bool:
        if position.side == "long":
            return mark <= position.liquidation_price
        return mark >= position.liquidation_price

    async def _liquidate(self, position: _Position) -> ExchangeOrder:
        """Closes the position at its liquidation price; its isolated margin is lost, the open
        orders of the symbol are cancelled (Binance cancels them before liquidating)."""
        symbol, now = position.symbol, _now()
        async with self._database() as session, session.begin():
            account = await self._account(session)
            row = await session.get(PaperPosition, symbol, with_for_update=True)
            if row is not None:
                position = self._position_of(row)
                account.wallet_balance = _money(account.wallet_balance
                                                - position.isolated_margin)
                account.updated_at = now
                await session.delete(row)
            cancelled = (await session.scalars(
                select(PaperOrder).where(PaperOrder.symbol == symbol,
                                         PaperOrder.status == OrderStatus.OPEN.value))).all()
            for resting in cancelled:
                resting.status = OrderStatus.CANCELED.value
                resting.updated_at = now
            count = await session.scalar(
                select(func.count()).select_from(PaperOrder).where(
                    PaperOrder.symbol == symbol,
                    PaperOrder.type == OrderType.LIQUIDATION.value))
            order = PaperOrder(
                client_order_id=f"liq-{symbol}-{(count or 0) + 1}",
                exchange_order_id=self._new_id(), symbol=symbol,
                side=(OrderSide.SELL if position.side == "long" else OrderSide.BUY).value,
                type=OrderType.LIQUIDATION.value, status=OrderStatus.FILLED.value,
                quantity=position.quantity, filled_quantity=position.quantity,
                average_price=position.liquidation_price, stop_price=None, reduce_only=True,
                fee=0.0, created_at=now, updated_at=now)
            session.add(order)
            result = self._order_of(order)
        self._positions.pop(symbol, None)
        self._resting.pop(symbol, None)
        self._bounds.pop(symbol, None)
        log.warning("paper %s %s %s liquidated at %s, margin %s lost", symbol, position.side,
                    position.quantity, position.liquidation_price, position.isolated_margin)
        return result

    async def _trigger(self, symbol: str, client_order_id: str, price: float
                       ) -> ExchangeOrder | None:
        """A triggered resting order: filled at the last price for at most the position's size,
        or expired when there is no position it can reduce."""
        now = _now()
        async with self._database() as session, session.begin():
            order = await session.get(PaperOrder, client_order_id, with_for_update=True)
            if order is None or order.status != OrderStatus.OPEN.value:
                self._unindex_resting(symbol, client_order_id)
                return None
            side = OrderSide(order.side)
            account = await self._account(session)
            rows = {row.symbol: row for row in (await session.scalars(
                select(PaperPosition).with_for_update())).all()}
            row = rows.get(symbol)
            position = self._position_of(row) if row else None
            if position is None or _direction(position.side) == _direction(side):
                order.status = OrderStatus.EXPIRED.value
                order.updated_at = now
                fill = None
            else:
                fill_price = self._slipped(symbol, side, price)
                fill = self._fill(
                    symbol=symbol, side=side, quantity=min(order.quantity, position.quantity),
                    price=fill_price, reduce_only=True, wallet=account.wallet_balance,
                    position=position,
                    other_margins=sum(r.isolated_margin for s, r in rows.items() if s != symbol))
                order.status = OrderStatus.FILLED.value
                order.filled_quantity = fill.filled
                order.average_price = fill_price
                order.fee = fill.fee
                order.updated_at = now
                await self._apply(session, account, row, fill, symbol, now)
            result = self._order_of(order)
        self._unindex_resting(symbol, client_order_id)
        if fill is None:
            log.info("paper %s %s expired: no position to reduce", symbol, client_order_id)
            return None
        self._positions_after(symbol, fill.position)
        log.info("paper %s %s %s triggered: %s @ %s", symbol, result.type.value,
                 client_order_id, result.filled_quantity, result.average_price)
        return result

    # --- the arithmetic of a fill -----------------------------------------------------

    def _fill(self, *, symbol: str, side: OrderSide, quantity: float, price: float,
              reduce_only: bool, wallet: float, position: _Position | None,
              other_margins: float) -> _Fill:
        """What a fill of `quantity` at `price` does to the wallet and the position (one-way
        mode: an opposite order reduces, closes, and unless reduce-only flips)."""
        direction = _direction(side)
        opposite = position is not None and _direction(position.side) != direction
        if reduce_only and not opposite:
            raise _reject(REDUCE_ONLY_REJECTED,
                          f"(no {'long' if direction < 0 else 'short'} position on {symbol} "
                          "to reduce)")
        step = self._precision(symbol).quantity_step
        close_qty = min(quantity, position.quantity) if opposite and position else 0.0
        open_qty = 0.0 if reduce_only else self._subtract(quantity, close_qty, step)
        filled = self._add(close_qty, open_qty, step)
        fee = _money(self._settings.paper_taker_fee * filled * price)

        realized = 0.0
        after = position
        if close_qty > 0 and position is not None:
            realized = _money(_direction(position.side) * (price - position.entry_price)
                              * close_qty)
            remaining = self._subtract(position.quantity, close_qty, step)
            if remaining <= 0:
                after = None
            else:
                margin = _money(position.isolated_margin * remaining / position.quantity)
                after = self._position(symbol, position.side, remaining, position.entry_price,
                                       position.leverage, margin)
        if open_qty > 0:
            leverage = after.leverage if after is not None else self._leverage
            added_margin = _money(open_qty * price / leverage)
            kept_margin = after.isolated_margin if after is not None else 0.0
            available = wallet + realized - other_margins - kept_margin
            if added_margin + fee > available + 1e-9:
                raise _reject(INSUFFICIENT_MARGIN,
                              f"(needs {added_margin + fee:.8f} USDT, available "
                              f"{available:.8f})")
            if after is None:
                after = self._position(symbol, "long" if direction > 0 else "short", open_qty,
                                       price, leverage, added_margin)
            else:
                total = self._add(after.quantity, open_qty, step)
                entry = (after.quantity * after.entry_price + open_qty * price) / total
                after = self._position(symbol, after.side, total, entry, leverage,
                                       _money(after.isolated_margin + added_margin))
            bracket = bracket_for(BUNDLED.get(symbol, FALLBACK), after.quantity * price)
            if leverage > bracket.max_leverage:
                raise _reject(MAX_POSITION, f"(notional {after.quantity * price:.2f}, "
                                            f"leverage {leverage}, max {bracket.max_leverage})")
        return _Fill(filled=filled, fee=fee, realized_pnl=realized,
                     wallet=_money(wallet + realized - fee), position=after)

    @staticmethod
    def _position(symbol: str, side: str, quantity: float, entry: float, leverage: int,
                  margin: float) -> _Position:
        brackets = BUNDLED.get(symbol, FALLBACK)
        bracket = bracket_for(brackets, quantity * entry)
        liquidation = liquidation_price(side, quantity, entry, margin,
                                        bracket.maintenance_margin_rate,
                                        bracket.maintenance_amount)
        return _Position(symbol, side, quantity, entry, leverage, margin, liquidation)

    def _position_of(self, row: PaperPosition) -> _Position:
        return self._position(row.symbol, row.side, row.quantity, row.entry_price, row.leverage,
                              row.isolated_margin)

    @staticmethod
    async def _apply(session: AsyncSession, account: PaperAccount, row: PaperPosition | None,
               fill: _Fill, symbol: str, now: datetime) -> None:
        """Writes a fill's outcome: the wallet, and the position row (removed when flat)."""
        account.wallet_balance = fill.wallet
        account.updated_at = now
        after = fill.position
        if after is None:
            if row is not None:
                await session.delete(row)
            return
        if row is None:
            session.add(PaperPosition(symbol=symbol, side=after.side, quantity=after.quantity,
                                      entry_price=after.entry_price, leverage=after.leverage,
                                      isolated_margin=after.isolated_margin, updated_at=now))
            return
        row.side = after.side
        row.quantity = after.quantity
        row.entry_price = after.entry_price
        row.leverage = after.leverage
        row.isolated_margin = after.isolated_margin
        row.updated_at = now

    # --- helpers ----------------------------------------------------------------------

    @staticmethod
    def _precision(symbol: str) -> Precision:
        return PAPER_PRECISION.get(symbol, FALLBACK_PRECISION)

    @staticmethod
    def _floor_to_step(quantity: float, step: float) -> float:
        if quantity <= 0:
            return 0.0
        steps = (Decimal(str(quantity)) / Decimal(str(step))).to_integral_value(
            rounding=ROUND_FLOOR)
        return float(steps * Decimal(str(step)))

    @classmethod
    def _subtract(cls, a: float, b: float, step: float) -> float:
        return max(cls._on_step(Decimal(str(a)) - Decimal(str(b)), step), 0.0)

    @classmethod
    def _add(cls, a: float, b: float, step: float) -> float:
        return cls._on_step(Decimal(str(a)) + Decimal(str(b)), step)

    @staticmethod
    def _on_step(value: Decimal, step: float) -> float:
        exact = Decimal(str(step))
        return float((value / exact).to_integral_value() * exact)

    def _slipped(self, symbol: str, side: OrderSide, price: float) -> float:
        """The last price moved against the taker, on the symbol's price tick."""
        bps = Decimal(str(self._settings.paper_slippage_bps)) / Decimal(10_000)
        factor = 1 + bps if side == OrderSide.BUY else 1 - bps
        return round_to_tick(Decimal(str(price)) * factor, self._precision(symbol).price_tick)

    @staticmethod
    def _new_id() -> str:
        return uuid.uuid4().hex

    async def _account(self, session: AsyncSession) -> PaperAccount:
        account = await session.get(PaperAccount, ACCOUNT_ID, with_for_update=True)
        if account is None:  # the row was removed behind our back: start afresh
            account = PaperAccount(id=ACCOUNT_ID,
                                   wallet_balance=self._settings.paper_starting_balance,
                                   updated_at=_now())
            session.add(account)
        return account

    @staticmethod
    async def _reject_duplicate(session: AsyncSession, client_order_id: str) -> None:
        if await session.get(PaperOrder, client_order_id) is not None:
            raise _reject(DUPLICATE, f"({client_order_id})")

    @asynccontextmanager
    async def _database(self) -> AsyncIterator[AsyncSession]:
        """A session; a duplicate key is Binance's -4116, any other database failure makes
        the exchange unavailable (the caller resolves the outcome by client id)."""
        try:
            async with self._sessions() as session:
                yield session
        except OrderRejected:
            raise
        except IntegrityError as error:
            raise _reject(DUPLICATE) from error
        except (DBAPIError, OSError, TimeoutError) as error:
            raise ExchangeUnavailable(f"paper exchange storage failed: {error}") from error

    @staticmethod
    def _resting_of(order: PaperOrder) -> _Resting:
        return _Resting(client_order_id=order.client_order_id, side=OrderSide(order.side),
                        type=OrderType(order.type), stop_price=float(order.stop_price or 0.0),
                        created_at=order.created_at)

    def _index(self, symbol: str, resting: _Resting) -> None:
        self._resting.setdefault(symbol, {})[resting.client_order_id] = resting
        self._bounds.pop(symbol, None)

    def _unindex_resting(self, symbol: str, client_order_id: str) -> None:
        orders = self._resting.get(symbol)
        if orders is not None:
            orders.pop(client_order_id, None)
            self._bounds.pop(symbol, None)
            if not orders:
                del self._resting[symbol]

    def _positions_after(self, symbol: str, position: _Position | None) -> None:
        if position is None:
            self._positions.pop(symbol, None)
        else:
            self._positions[symbol] = position

    def _exchange_position(self, position: _Position) -> ExchangePosition:
        mark = self._mark.get(position.symbol) or self._last.get(position.symbol)
        unrealized = (_money(_direction(position.side) * (mark - position.entry_price)
                             * position.quantity) if mark is not None else 0.0)
        return ExchangePosition(
            symbol=position.symbol, side=position.side, quantity=position.quantity,
            entry_price=position.entry_price, leverage=position.leverage,
            isolated_margin=position.isolated_margin,
            liquidation_price=position.liquidation_price, mark_price=mark,
            unrealized_pnl=unrealized)

    @staticmethod
    def _order_of(order: PaperOrder) -> ExchangeOrder:
        return ExchangeOrder(
            client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id,
            symbol=order.symbol, side=OrderSide(order.side), type=OrderType(order.type),
            status=OrderStatus(order.status), quantity=order.quantity,
            filled_quantity=order.filled_quantity, average_price=order.average_price,
            stop_price=order.stop_price, reduce_only=order.reduce_only, fee=order.fee,
            updated_at=order.updated_at)

