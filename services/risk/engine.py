"""RISK's decisions and state, over its tables: the I/O around the pure checks.

Verdicts are decided one at a time (a single active consumer, and a lock in-process), so two
signals can never both pass a limit only one of them fits. They are decided from the book in
memory (services/risk/book.py), which every write keeps equal to the tables. A verdict, its
reservation and its message are committed together; the message leaves through the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.risk.book import Book, utc_midnight
from services.risk.checks import Exposure, Limits, Portfolio, evaluate_entry, signal_checks
from services.risk.markets import MarketCatalog, PaperCatalog
from services.risk.metrics import TRADING_STATE, VERDICTS
from services.risk.models import (
    AccountState,
    KnownPosition,
    Reservation,
    RiskState,
    StopOut,
    VerdictRecord,
)
from services.risk.orders import MaintenanceOverride, Market, build_order
from services.risk.settings import RiskSettings
from shared.brackets import bracket_for
from shared.contracts import (
    AccountUpdated,
    Decision,
    Envelope,
    OrderPlan,
    OrderUpdated,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    ReasonCode,
    RiskAlertCode,
    RiskAlertRaised,
    Signal,
    SignalAnalyzed,
    TradeApproved,
    TradeRejected,
    TradingState,
    Verdict,
)
from shared.messaging import topology
from shared.observability.logging import get_logger
from shared.outbox import Outbox
from shared.redis import Keys

log = get_logger(__name__)

PRODUCER = "risk"
STATE_CODES = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
# An entry order that ends without a fill frees its reservation; a filled one frees it when
# its position is reported (position.opened), so the margin is never counted out in between.
RELEASING_ORDER_STATES = {"REJECTED", "CANCELED", "CANCELLED", "EXPIRED"}
RISK_STREAM_MAXLEN = 10_000
# Stage 1 of a close looks at its age only: no state, no cooldown.
CLOSE_CHECK_PORTFOLIO = Portfolio(state=TradingState.ACTIVE, equity=0.0, day_start_equity=0.0,
                                  daily_pnl=0.0)


class RiskEngine:
    def __init__(
        self, settings: RiskSettings, redis: Redis, sessions: async_sessionmaker[AsyncSession],
        outbox: Outbox, markets: MarketCatalog | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.sessions = sessions
        self.outbox = outbox
        # Verdicts and every write to RISK's tables, one at a time, each then applied to the book.
        self._write_lock = asyncio.Lock()
        self._book: Book | None = None  # None: to be read from the database before its next use
        # Precision and brackets of a symbol, from memory: the paper tables, or what the
        # live catalog last read from the exchange (services/risk/markets.py).
        self.markets = markets or PaperCatalog()
        self.market_for = self.markets.market_for

    # --- state -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[Book]:
        """One write at a time, from the book. Whatever fails in it, a commit included, has the
        book read again from the database before its next use."""
        async with self._write_lock:
            try:
                if self._book is None:
                    self._book = await self._load()
                yield self._book
            except BaseException:
                self._book = None
                raise

    async def _read(self) -> Book:
        if self._book is not None:
            return self._book
        async with self._writing() as book:
            return book

    async def _load(self) -> Book:
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            state = await self._state(session)
            account = await session.get(AccountState, 1)
            positions = await session.scalars(
                select(KnownPosition).where(KnownPosition.closed_at.is_(None)))
            reservations = await session.scalars(
                select(Reservation).where(Reservation.released_at.is_(None),
                                          Reservation.expires_at > now))
            stop_outs = await session.scalars(select(StopOut))
            approvals = await session.scalars(
                select(VerdictRecord.decided_at)
                .where(VerdictRecord.approved.is_(True),
                       VerdictRecord.decided_at >= utc_midnight(now))
                .order_by(VerdictRecord.decided_at))
            return Book(
                state=state, limits=self.settings.limits(state.limits), account=account,
                positions={p.position_id: p for p in positions},
                reservations={r.signal_id: r for r in reservations},
                stop_outs={s.symbol: s.stopped_at for s in stop_outs},
                approvals=list(approvals))

    def _keep_state(self, book: Book, row: RiskState) -> None:
        book.state, book.limits = row, self.settings.limits(row.limits)

    async def _state(self, session: AsyncSession, for_update: bool = False) -> RiskState:
        row = await session.get(RiskState, 1, with_for_update=for_update)
        if row is None:
            row = RiskState(id=1, trading_state=TradingState.ACTIVE.value, reason="initial",
                            changed_by="risk", changed_at=datetime.now(UTC), limits={})
            session.add(row)
            await session.flush()
        return row

    async def limits(self) -> Limits:
        return (await self._read()).limits

    async def portfolio(self, now: datetime) -> Portfolio:
        return self._portfolio(await self._read(), now)

    def _portfolio(self, book: Book, now: datetime) -> Portfolio:
        account = book.account
        equity = account.equity if account else self.settings.paper_starting_balance
        exposures = tuple(
            Exposure(symbol=p.symbol, side=p.side, margin=p.margin,
                     notional=p.quantity * p.entry_price,
                     stop_pct=(abs(p.entry_price - p.stop_loss) / p.entry_price
                               if p.stop_loss else self.settings.stop_loss_pct))
            for p in book.positions.values()
        ) + tuple(
            Exposure(symbol=r.symbol, side=r.side, margin=r.margin, notional=r.notional,
                     stop_pct=r.stop_pct, reserved=True)
            for r in book.live_reservations(now)
        )
        last_minute, today = book.approvals_since(now)
        return Portfolio(
            state=TradingState(book.state.trading_state),
            equity=equity,
            day_start_equity=account.day_start_equity if account else equity,
            daily_pnl=account.daily_pnl if account else 0.0,
            exposures=exposures,
            last_stop_out=dict(book.stop_outs),
            approvals_last_minute=last_minute,
            approvals_today=today,
        )

    # --- verdicts --------------------------------------------------------------------

    def plan(self, *, symbol: str, side: str, price: float, equity: float, leverage: int,
             margin_fraction: float | None = None, quantity: float | None = None,
             override: MaintenanceOverride | None = None) -> tuple[OrderPlan, Market]:
        market = self.market_for(symbol)
        order = build_order(
            symbol=symbol, side=side, price=price, equity=equity, leverage=leverage,
            market=market, stop_loss_pct=self.settings.stop_loss_pct,
            take_profit_pct=self.settings.take_profit_pct, margin_fraction=margin_fraction,
            quantity=quantity, override=override or MaintenanceOverride(),
        )
        return order, market

    def judge(self, order: OrderPlan, market: Market, *, sent_at: datetime | None, now: datetime,
              portfolio: Portfolio, limits: Limits) -> Verdict:
        return evaluate_entry(
            order=order, sent_at=sent_at, now=now,
            bracket_max_leverage=bracket_for(market.brackets, order.notional).max_leverage,
            min_notional=market.precision.min_notional, portfolio=portfolio, limits=limits,
        )

    async def decide(self, analysis: SignalAnalyzed) -> None:
        """Handle one analysis from `signal_processing`: exactly one verdict per signal."""
        signal = analysis.signal
        if analysis.decision not in (Decision.EXECUTE, Decision.CLOSE):
            log.warning("analysis that is not for RISK ignored", decision=analysis.decision)
            return
        async with self._writing() as book:
            now = datetime.now(UTC)
            verdict = self._verdict(book, analysis, now)
            payload_type = TradeApproved if verdict.approved else TradeRejected
            envelope = Envelope.wrap(
                payload_type(signal=signal, verdict=verdict, decided_at=now),
                producer=PRODUCER, correlation_id=signal.signal_id,
                message_id=str(uuid.uuid5(uuid.UUID(signal.signal_id), "risk.verdict")),
            )
            try:
                async with self.sessions.begin() as session:
                    reservation, state = await self._record(session, signal, verdict, envelope,
                                                            now)
            except IntegrityError:
                # The signal id is the verdict's key: an analysis decided before (redelivered,
                # or decided just before a crash) cannot be recorded again.
                if not await self._decided(signal.signal_id):
                    raise
                log.info("analysis already decided; re-sending only what is unsent")
                decided = None
            else:
                if reservation is not None:
                    book.reservations[signal.signal_id] = reservation
                if verdict.approved:
                    book.approve(now)
                if state is not None:
                    self._keep_state(book, state)
                    await self._mirror_state(state.trading_state)
                first_code = verdict.reasons[0].code.value if verdict.reasons else "none"
                VERDICTS.labels(str(verdict.approved).lower(), first_code).inc()
                log.info("verdict", signal_id=signal.signal_id, symbol=signal.symbol,
                         approved=verdict.approved, stage_failed=verdict.stage_failed,
                         reasons=[r.code.value for r in verdict.reasons],
                         reverse=verdict.reverse)
                decided = verdict
        await self.outbox.send_pending()
        if decided is not None:
            await self._stream(signal.signal_id, signal.symbol, decided)

    async def _record(self, session: AsyncSession, signal: Signal, verdict: Verdict,
                      envelope: Envelope, now: datetime
                      ) -> tuple[Reservation | None, RiskState | None]:
        """The verdict, its reservation and its message, in the caller's transaction. Returns
        what the book takes once that commits: the reservation, and the trading state if the
        verdict halts trading."""
        dumped = envelope.payload["verdict"]  # dumped once, for the message and the record
        session.add(VerdictRecord(
            signal_id=signal.signal_id, symbol=signal.symbol, approved=verdict.approved,
            stage_failed=verdict.stage_failed, reasons=dumped["reasons"], order=dumped["order"],
            message_id=envelope.message_id, decided_at=now,
        ))
        reservation = None
        if verdict.approved and verdict.order is not None:
            order = verdict.order
            reservation = Reservation(
                signal_id=signal.signal_id, symbol=order.symbol, side=order.side,
                margin=order.margin, notional=order.notional,
                stop_pct=abs(order.price - order.stop_loss) / order.price,
                expires_at=now + timedelta(seconds=self.settings.reservation_ttl_s),
            )
            session.add(reservation)
        self.outbox.stage(session, envelope, topology.RISK_MANAGEMENT.name,
                          "trade.execute" if verdict.approved else "trade.rejected")
        state = None
        if any(r.code is ReasonCode.DAILY_LOSS_LIMIT for r in verdict.reasons):
            state = await self._change_state(session, TradingState.HALTED,
                                             "daily loss limit reached", "risk")
        return reservation, state

    def _verdict(self, book: Book, analysis: SignalAnalyzed, now: datetime) -> Verdict:
        signal = analysis.signal
        # Without TradingView's time, BRAIN's receipt dates the signal: one that waited in a
        # queue (RISK down) must not be traded late either.
        sent_at = signal.sent_at or signal.received_at
        if analysis.decision is Decision.CLOSE:
            # Closes pass stage 1 whatever the trading state, but a stale close could close a
            # position opened since: it is refused like a stale entry.
            stale = signal_checks(symbol=signal.symbol, sent_at=sent_at, now=now,
                                  portfolio=CLOSE_CHECK_PORTFOLIO,
                                  limits=self.settings.limits({"allowed_symbols": [signal.symbol]}))
            return (Verdict(approved=False, stage_failed=1, reasons=stale, close=True)
                    if stale else Verdict(approved=True, close=True))
        portfolio = self._portfolio(book, now)
        margin_fraction = analysis.sizing.margin_fraction if analysis.sizing else 0.0
        order, market = self.plan(
            symbol=signal.symbol, side=signal.action.value, price=analysis.entry_price,
            equity=portfolio.equity, leverage=analysis.leverage, margin_fraction=margin_fraction,
        )
        return self.judge(order, market, sent_at=sent_at, now=now, portfolio=portfolio,
                          limits=book.limits)

    async def _decided(self, signal_id: str) -> bool:
        async with self.sessions() as session:
            return await session.get(VerdictRecord, signal_id) is not None

    async def _stream(self, signal_id: str, symbol: str, verdict: Verdict) -> None:
        """`risk:stream`: real-time data for dashboards, fine to lose at the tail."""
        try:
            await self.redis.xadd(
                self.keys("risk", "stream"),
                {"signal_id": signal_id, "symbol": symbol, "verdict": verdict.model_dump_json()},
                maxlen=RISK_STREAM_MAXLEN, approximate=True)
        except Exception as exc:
            log.warning("risk:stream append failed", error=f"{type(exc).__name__}")

    async def check(self, *, symbol: str, side: str, price: float, leverage: int,
                    margin_fraction: float | None, quantity: float | None,
                    equity: float | None, sent_at: datetime | None,
                    override: MaintenanceOverride) -> Verdict:
        """All three stages on a hypothetical order: no reservation, no publish."""
        now = datetime.now(UTC)
        book = await self._read()
        portfolio = self._portfolio(book, now)
        if equity is not None:
            portfolio = dataclasses.replace(portfolio, equity=equity)
        order, market = self.plan(symbol=symbol, side=side, price=price,
                                  equity=portfolio.equity, leverage=leverage,
                                  margin_fraction=margin_fraction, quantity=quantity,
                                  override=override)
        return self.judge(order, market, sent_at=sent_at, now=now, portfolio=portfolio,
                          limits=book.limits)

    # --- trading state ---------------------------------------------------------------

    async def change_state(self, state: TradingState | None, reason: str, changed_by: str,
                           limits: dict[str, Any] | None = None,
                           requested_at: datetime | None = None) -> None:
        """A command older than the state's last change (a redelivered /halt after a newer
        /resume) changes nothing."""
        async with self._writing() as book:
            if requested_at is not None and requested_at <= book.state.changed_at:
                log.info("stale trading-state command ignored", state=state)
                return
            async with self.sessions.begin() as session:
                row = await self._change_state(session, state, reason, changed_by, limits)
            self._keep_state(book, row)
            await self._mirror_state(row.trading_state)
        await self.outbox.send_pending()

    async def _change_state(self, session: AsyncSession, state: TradingState | None,
                            reason: str, changed_by: str,
                            limits: dict[str, Any] | None = None) -> RiskState:
        """Within the caller's transaction; the caller keeps the row and mirrors its state once
        that commits."""
        row = await self._state(session, for_update=True)
        if limits:
            row.limits = {**row.limits, **limits}
        if state is None or row.trading_state == state.value:
            return row
        previous = row.trading_state
        row.trading_state, row.reason, row.changed_by = state.value, reason, changed_by
        row.changed_at = datetime.now(UTC)
        alert = RiskAlertRaised(
            code=RiskAlertCode.TRADING_STATE_CHANGED,
            severity="critical" if state is TradingState.HALTED else "info",
            message=f"trading {previous} → {state.value} by {changed_by}: {reason}",
            details={"from": previous, "to": state.value, "reason": reason,
                     "changed_by": changed_by},
            raised_at=row.changed_at,
        )
        envelope = Envelope.wrap(alert, producer=PRODUCER, correlation_id=str(uuid.uuid4()))
        self.outbox.stage(session, envelope, topology.RISK_MANAGEMENT.name, "risk.alert")
        log.warning("trading state changed", previous=previous, state=state.value,
                    reason=reason, changed_by=changed_by)
        return row

    async def _mirror_state(self, state: str) -> None:
        """Live state for the other services (never given a TTL), and the gauge."""
        TRADING_STATE.set(STATE_CODES[TradingState(state)])
        try:
            await self.redis.set(self.keys("risk", "trading_state"), state)
        except Exception as exc:
            log.warning("trading state not mirrored to Redis", error=f"{type(exc).__name__}")

    async def current_state(self) -> RiskState:
        row = (await self._read()).state
        await self._mirror_state(row.trading_state)
        return row

    # --- what EXECUTE reports --------------------------------------------------------

    async def on_position_opened(self, event: PositionOpened) -> None:
        async with self._writing() as book:
            async with self.sessions.begin() as session:
                known = await session.get(KnownPosition, event.position_id)
                if known is None:  # a closed one stays closed, whatever order events come in
                    known = KnownPosition(
                        position_id=event.position_id, signal_id=event.signal_id,
                        symbol=event.symbol, side=event.side, quantity=event.quantity,
                        entry_price=event.entry_price, margin=event.margin,
                        stop_loss=event.stop_loss, liquidation_price=event.liquidation_price,
                        opened_at=event.opened_at,
                    )
                    session.add(known)
                if event.signal_id:
                    await self._release(session, event.signal_id)
            book.keep(known)
            if event.signal_id:
                book.reservations.pop(event.signal_id, None)

    async def on_position_updated(self, event: PositionUpdated) -> bool:
        """Returns whether anything RISK keeps changed."""
        values = {"quantity": event.quantity, "margin": event.margin,
                  "stop_loss": event.stop_loss, "liquidation_price": event.liquidation_price}
        async with self._writing() as book:
            known = book.positions.get(event.position_id)
            # Sent on every price move: mostly nothing RISK keeps has changed. A position not in
            # the book is closed or unknown, which an update does not open.
            if known is None or all(getattr(known, k) == v for k, v in values.items()):
                return False
            async with self.sessions.begin() as session:
                await session.execute(
                    update(KnownPosition)
                    .where(KnownPosition.position_id == event.position_id,
                           KnownPosition.closed_at.is_(None))
                    .values(**values))
            for name, value in values.items():
                setattr(known, name, value)
        return True

    async def on_position_closed(self, event: PositionClosed) -> None:
        async with self._writing() as book:
            async with self.sessions.begin() as session:
                known = await session.get(KnownPosition, event.position_id)
                if event.remaining_quantity > 0:
                    if known is not None and known.closed_at is None and known.quantity > 0:
                        known.margin *= event.remaining_quantity / known.quantity
                        known.quantity = event.remaining_quantity
                elif known is None:  # closed before its opening arrived: remember it as closed
                    known = KnownPosition(
                        position_id=event.position_id, symbol=event.symbol, side=event.side,
                        quantity=0.0, entry_price=event.entry_price, margin=0.0,
                        liquidation_price=0.0, opened_at=event.closed_at,
                        closed_at=event.closed_at)
                    session.add(known)
                else:
                    known.closed_at = event.closed_at
                if event.reason == "stop_loss":
                    await session.merge(StopOut(symbol=event.symbol, stopped_at=event.closed_at))
            if known is not None:
                book.keep(known)
            if event.reason == "stop_loss":
                book.stop_outs[event.symbol] = event.closed_at

    async def on_order_updated(self, event: OrderUpdated) -> None:
        if (event.signal_id and not event.reduce_only
                and event.status.upper() in RELEASING_ORDER_STATES):
            async with self._writing() as book:
                async with self.sessions.begin() as session:
                    await self._release(session, event.signal_id)
                book.reservations.pop(event.signal_id, None)

    async def _release(self, session: AsyncSession, signal_id: str) -> None:
        await session.execute(
            update(Reservation)
            .where(Reservation.signal_id == signal_id, Reservation.released_at.is_(None))
            .values(released_at=datetime.now(UTC)))

    async def on_account_updated(self, event: AccountUpdated) -> None:
        values = {"equity": event.equity, "day_start_equity": event.day_start_equity,
                  "daily_pnl": event.daily_pnl, "updated_at": event.updated_at}
        async with self._writing() as book:
            # Only a newer snapshot replaces the one kept: late deliveries change nothing.
            if book.account is not None and event.updated_at <= book.account.updated_at:
                return
            account = AccountState(id=1, **values)
            state = None
            async with self.sessions.begin() as session:
                if book.account is None:
                    session.add(account)
                else:
                    await session.execute(
                        update(AccountState).where(AccountState.id == 1).values(**values))
                if event.daily_pnl <= -book.limits.emergency_loss_pct * event.day_start_equity:
                    state = await self._change_state(
                        session, TradingState.HALTED,
                        f"daily loss limit reached ({event.daily_pnl:.2f})", "risk")
            book.account = account
            if state is not None:
                self._keep_state(book, state)
            await self._mirror_state(book.state.trading_state)
        await self.outbox.send_pending()

    async def on_emergency(self) -> None:
        await self.change_state(TradingState.HALTED, "emergency close by EXECUTE", "execute")

    async def open_positions(self) -> list[KnownPosition]:
        return list((await self._read()).positions.values())

    async def reservations(self, now: datetime) -> list[Reservation]:
        return (await self._read()).live_reservations(now)
