"""The position monitor (execute.md): every tick of `market:stream`, against open positions.

The hot path touches only the positions of the tick's symbol, in memory: unrealised PnL from
per-symbol aggregates, one comparison for the partial take-profit, one for the emergency
close. Nothing is written per tick; position updates go out at most once a second per
symbol, in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from redis.asyncio import Redis

from services.execute.account import AccountKeeper
from services.execute.engine import ExecutionEngine
from services.execute.metrics import STALE_PRICE_SYMBOLS, TICK_LATENCY, UNREALIZED_PNL
from services.execute.models import PositionRecord
from shared.contracts import AccountUpdated, EmergencyCloseTriggered, Envelope, PositionUpdated
from shared.messaging import Broker, topology
from shared.observability.logging import get_logger
from shared.redis import Keys
from shared.streams import StreamReader

log = get_logger(__name__)

GROUP = "execution_processors"



@dataclass
class Watched:
    """What the hot path needs of an open position."""

    position_id: str
    symbol: str
    direction: int  # +1 long, −1 short
    quantity: float
    entry_price: float
    margin: float
    stop_loss: float | None
    liquidation_price: float
    opened_at: datetime
    partial_taken: bool
    partial_trigger: float = 0.0  # price at which profit reaches the partial-TP share

    @classmethod
    def of(cls, p: PositionRecord) -> Watched:
        return cls(p.position_id, p.symbol, 1 if p.side == "long" else -1, p.quantity,
                   p.entry_price, p.margin, p.stop_loss, p.liquidation_price, p.opened_at,
                   p.partial_taken)


@dataclass
class SymbolBook:
    positions: list[Watched] = field(default_factory=list)
    signed_quantity: float = 0.0  # Σ s·q
    signed_cost: float = 0.0  # Σ s·q·entry
    unrealized: float = 0.0
    last_price: float = 0.0
    last_tick: float = 0.0  # monotonic
    last_published: float = 0.0
    # Nearest partial-TP trigger on each side: one comparison per tick finds a candidate.
    long_trigger: float = float("inf")
    short_trigger: float = 0.0

    def rebuild(self) -> None:
        self.signed_quantity = sum(p.direction * p.quantity for p in self.positions)
        self.signed_cost = sum(p.direction * p.quantity * p.entry_price for p in self.positions)
        pending = [p for p in self.positions if not p.partial_taken]
        self.long_trigger = min((p.partial_trigger for p in pending if p.direction > 0),
                                default=float("inf"))
        self.short_trigger = max((p.partial_trigger for p in pending if p.direction < 0),
                                 default=0.0)


class Monitor:
    def __init__(self, engine: ExecutionEngine, account: AccountKeeper, broker: Broker,
                 redis: Redis, keys: Keys) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.account = account
        self.broker = broker
        self.redis = redis
        self.stream = keys("market", "stream")
        self.reader = StreamReader(redis, self.stream, GROUP)
        self.books: dict[str, SymbolBook] = {}
        self.wallet = 0.0
        self.day_start_equity = 0.0
        self.emergency_day: datetime | None = None
        self.stale: set[str] = set()
        self._busy: set[asyncio.Task[None]] = set()
        self._publishing: set[str] = set()

    # --- the in-memory book ----------------------------------------------------------

    async def reload(self, account: AccountUpdated | None = None,
                     positions: list[PositionRecord] | None = None) -> None:
        """The open positions and the account: as given (just read), or read now."""
        if positions is None:
            positions = await self.engine.open_positions()
        if account is None:
            account = await self.account.current(positions)
        self.wallet = account.wallet_balance
        self.day_start_equity = account.day_start_equity
        books: dict[str, SymbolBook] = {}
        for record in positions:
            watched = Watched.of(record)
            # Profit reaches PARTIAL_TP_EQUITY_PCT of equity at entry ± share·E / q.
            distance = self.settings.partial_tp_equity_pct * account.equity / watched.quantity
            watched.partial_trigger = watched.entry_price + watched.direction * distance
            book = books.get(record.symbol)
            if book is None:
                book = books[record.symbol] = SymbolBook(last_tick=time.monotonic())
                old = self.books.get(record.symbol)
                if old is not None:  # keep what the ticks told (prices age from here)
                    book.last_price, book.last_tick = old.last_price, old.last_tick
                    book.last_published = old.last_published
            book.positions.append(watched)
        for book in books.values():
            book.rebuild()
            if book.last_price:
                book.unrealized = book.last_price * book.signed_quantity - book.signed_cost
        for symbol, old in self.books.items():  # keep prices of symbols without positions
            if symbol not in books:
                books[symbol] = SymbolBook(last_price=old.last_price, last_tick=old.last_tick)
                if old.positions:  # its last position closed: no stale series left behind
                    with contextlib.suppress(KeyError):
                        UNREALIZED_PNL.remove(symbol)
        self.stale &= {s for s, b in books.items() if b.positions}
        STALE_PRICE_SYMBOLS.set(len(self.stale))
        self.books = books

    def total_unrealized(self) -> float:
        return sum(book.unrealized for book in self.books.values())

    # --- the hot path ----------------------------------------------------------------

    async def on_tick(self, symbol: str, price: float, mark_price: float | None = None) -> None:
        started = time.perf_counter()
        fills = await self.engine.exchange.on_tick(symbol, price, mark_price)
        if fills:
            for fill in fills:
                await self.engine.on_exchange_fill(fill)
            await self.engine.settled()  # the book among it
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = SymbolBook()
        book.last_price = mark_price or price
        book.last_tick = time.monotonic()
        if symbol in self.stale:
            self.stale.discard(symbol)
            STALE_PRICE_SYMBOLS.set(len(self.stale))
        if not book.positions:
            TICK_LATENCY.observe(time.perf_counter() - started)
            return
        book.unrealized = book.last_price * book.signed_quantity - book.signed_cost

        daily_pnl = self.wallet + self.total_unrealized() - self.day_start_equity
        if daily_pnl <= -self.settings.emergency_loss_pct * self.day_start_equity:
            await self.emergency_close(daily_pnl)
        elif book.last_price >= book.long_trigger or (
                book.short_trigger and book.last_price <= book.short_trigger):
            await self.partial_take_profit(book)
        if book.last_tick - book.last_published >= self.settings.position_update_interval_s:
            book.last_published = book.last_tick
            self._background(self._publish_updates(symbol))
        TICK_LATENCY.observe(time.perf_counter() - started)

    async def partial_take_profit(self, book: SymbolBook) -> None:
        """Close PARTIAL_TP_FRACTION of a position once, then move its stop to the entry."""
        price = book.last_price
        due = [p for p in book.positions if not p.partial_taken and (
            (p.direction > 0 and price >= p.partial_trigger)
            or (p.direction < 0 and price <= p.partial_trigger))]
        for watched in due:
            watched.partial_taken = True  # once, even while the close is in flight
            await self.engine.partial_take_profit(watched.position_id,
                                                  self.settings.partial_tp_fraction)
        await self.reload()

    async def emergency_close(self, daily_pnl: float) -> None:
        today = self.engine.now().replace(hour=0, minute=0, second=0, microsecond=0)
        threshold = -self.settings.emergency_loss_pct * self.day_start_equity
        announce = self.emergency_day != today  # account.emergency once a day
        if announce:
            log.critical("emergency close: daily loss limit reached", daily_pnl=daily_pnl,
                         threshold=threshold)
        self.emergency_day = today
        cause = EmergencyCloseTriggered(
            daily_pnl=daily_pnl, day_start_equity=self.day_start_equity, threshold=threshold,
            triggered_at=self.engine.now()) if announce else None
        # Positions a failure left open are tried again on the next tick.
        await self.engine.close_all("emergency", cause)
        await self.engine.settled()

    # --- background work -------------------------------------------------------------

    def _background(self, coroutine) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coroutine)
        self._busy.add(task)
        task.add_done_callback(self._busy.discard)

    async def _publish_updates(self, symbol: str) -> None:
        """`position.updated` for a symbol's positions: informational, so sent directly and
        skipped while the previous batch for that symbol is still going out."""
        if symbol in self._publishing:
            return
        self._publishing.add(symbol)
        try:
            book = self.books.get(symbol)
            if book is None:
                return
            UNREALIZED_PNL.labels(symbol).set(book.unrealized)
            now = self.engine.now()
            for p in list(book.positions):
                unrealized = p.direction * (book.last_price - p.entry_price) * p.quantity
                event = PositionUpdated(
                    position_id=p.position_id, symbol=p.symbol,
                    side="long" if p.direction > 0 else "short", quantity=p.quantity,
                    entry_price=p.entry_price, margin=p.margin, stop_loss=p.stop_loss,
                    liquidation_price=p.liquidation_price, mark_price=book.last_price,
                    unrealized_pnl=unrealized, updated_at=now)
                await self.broker.publish(
                    Envelope.wrap(event, producer="execute", correlation_id=p.position_id),
                    topology.TRADING_EXECUTION.name, f"position.updated.{symbol}")
        except Exception as exc:
            log.debug("position updates skipped", error=f"{type(exc).__name__}")
        finally:
            self._publishing.discard(symbol)

    async def housekeeping(self) -> None:
        """Once a second: auto-close of old positions, stale prices, a derived state whose
        refresh failed; every ACCOUNT_UPDATE_INTERVAL_S with positions open:
        `account.updated`."""
        last_account = 0.0
        while True:
            await asyncio.sleep(1.0)
            try:
                self.engine.refresh_soon()
                await self._auto_close()
                await self._stale_prices()
                has_positions = any(b.positions for b in self.books.values())
                if has_positions and time.monotonic() - last_account >= \
                        self.settings.account_update_interval_s:
                    last_account = time.monotonic()
                    account = await self.account.publish()
                    self.wallet, self.day_start_equity = (account.wallet_balance,
                                                          account.day_start_equity)
            except Exception as exc:
                log.warning("monitor housekeeping failed", error=f"{type(exc).__name__}: {exc}")

    async def _auto_close(self) -> None:
        limit = self.engine.now() - timedelta(hours=self.settings.auto_close_hours)
        old = [p for b in self.books.values() for p in b.positions if p.opened_at <= limit]
        for p in old:
            await self.engine.close_position(p.position_id, "auto_close")
        if old:
            await self.engine.settled()

    async def _stale_prices(self) -> None:
        now = time.monotonic()
        for symbol, book in self.books.items():
            if book.positions and symbol not in self.stale and \
                    now - book.last_tick > self.settings.stale_price_s:
                self.stale.add(symbol)
                STALE_PRICE_SYMBOLS.set(len(self.stale))
                await self.engine.alert(
                    "STALE_PRICES", symbol,
                    f"no price for {symbol} in {self.settings.stale_price_s:.0f} s")

    @property
    def healthy_prices(self) -> bool:
        return not self.stale

    # --- reading market:stream -------------------------------------------------------

    async def run(self) -> None:
        await self.reader.ensure_group()
        await self.reload()
        await self.reader.run(self._tick_from)

    async def _tick_from(self, fields: dict[str, str]) -> None:
        try:
            symbol = fields["symbol"]
            price = float(fields["price"])
            mark = float(fields["mark_price"]) if fields.get("mark_price") else None
        except (KeyError, ValueError):
            return  # a malformed tick
        await self.on_tick(symbol, price, mark)
