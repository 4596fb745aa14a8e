"""RISK's decisions and state, over its tables: the I/O around the pure checks.

Verdicts are decided one at a time (a single active consumer, and a lock in-process), so two
signals can never both pass a limit only one of them fits. A verdict, its reservation and its
message are committed together; the message leaves through the outbox.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

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
    SignalAnalyzed,
    TradeApproved,
    TradeRejected,
    TradingState,
    Verdict,
)
from shared.messaging import topology
from shared.observability.logging import get_logger
from shared.outbox import Outbox, stage
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


def _utc_midnight(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


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
        # Verdicts and every write to the trading state, one at a time in this process (across
        # processes: the single active consumer, and the state row locked FOR UPDATE).
        self._write_lock = asyncio.Lock()
        # Precision and brackets of a symbol, from memory: the paper tables, or what the
        # live catalog last read from the exchange (services/risk/markets.py).
        self.markets = markets or PaperCatalog()
        self.market_for = self.markets.market_for

    # --- state -----------------------------------------------------------------------

    async def send_pending(self) -> None:
        """Publish what the outbox holds. A failure fails no caller: the effects are committed
        and the relay sends the messages once the broker answers."""
        try:
            await self.outbox.flush()
        except Exception as exc:
            log.warning("outbox not flushed now; the relay will", error=f"{type(exc).__name__}")

    async def _state(self, session: AsyncSession, for_update: bool = False) -> RiskState:
        row = await session.get(RiskState, 1, with_for_update=for_update)
        if row is None:
            row = RiskState(id=1, trading_state=TradingState.ACTIVE.value, reason="initial",
                            changed_by="risk", changed_at=datetime.now(UTC), limits={})
            session.add(row)
            await session.flush()
        return row

    async def limits(self, session: AsyncSession) -> Limits:
        return self.settings.limits((await self._state(session)).limits)

    async def portfolio(self, session: AsyncSession, now: datetime) -> Portfolio:
        state = await self._state(session)
        account = await session.get(AccountState, 1)
        positions = (await session.scalars(
            select(KnownPosition).where(KnownPosition.closed_at.is_(None)))).all()
        reservations = (await session.scalars(
            select(Reservation).where(Reservation.released_at.is_(None),
                                      Reservation.expires_at > now))).all()
        stop_outs = (await session.scalars(select(StopOut))).all()
        approvals = select(func.count()).select_from(VerdictRecord).where(
            VerdictRecord.approved.is_(True))
        last_minute = await session.scalar(
            approvals.where(VerdictRecord.decided_at > now - timedelta(minutes=1)))
        today = await session.scalar(
            approvals.where(VerdictRecord.decided_at >= _utc_midnight(now)))
        equity = account.equity if account else self.settings.paper_starting_balance
        exposures = tuple(
            Exposure(symbol=p.symbol, side=p.side, margin=p.margin,
                     notional=p.quantity * p.entry_price,
                     stop_pct=(abs(p.entry_price - p.stop_loss) / p.entry_price
                               if p.stop_loss else self.settings.stop_loss_pct))
            for p in positions
        ) + tuple(
            Exposure(symbol=r.symbol, side=r.side, margin=r.margin, notional=r.notional,
                     stop_pct=r.stop_pct, reserved=True)
            for r in reservations
        )
        return Portfolio(
            state=TradingState(state.trading_state),
            equity=equity,
            day_start_equity=account.day_start_equity if account else equity,
            daily_pnl=account.daily_pnl if account else 0.0,
            exposures=exposures,
            last_stop_out={s.symbol: s.stopped_at for s in stop_outs},
            approvals_last_minute=last_minute or 0,
            approvals_today=today or 0,
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
        async with self._write_lock:
            async with self.sessions.begin() as session:
                verdict: Verdict | None = None
                state: str | None = None
                if await session.get(VerdictRecord, signal.signal_id) is None:
                    verdict = await self._decide(session, analysis)
                    state = (await self._state(session)).trading_state
                else:
                    log.info("analysis already decided; re-sending only what is unsent")
            if state is not None:
                await self._mirror_state(state)
        await self.send_pending()
        if verdict is not None:
            await self._stream(signal.signal_id, signal.symbol, verdict)

    async def _decide(self, session: AsyncSession, analysis: SignalAnalyzed) -> Verdict:
        signal = analysis.signal
        now = datetime.now(UTC)
        # Without TradingView's time, BRAIN's receipt dates the signal: one that waited in a
        # queue (RISK down) must not be traded late either.
        sent_at = signal.sent_at or signal.received_at
        if analysis.decision is Decision.CLOSE:
            # Closes pass stage 1 whatever the trading state, but a stale close could close a
            # position opened since: it is refused like a stale entry.
            stale = signal_checks(symbol=signal.symbol, sent_at=sent_at, now=now,
                                  portfolio=CLOSE_CHECK_PORTFOLIO,
                                  limits=self.settings.limits({"allowed_symbols": [signal.symbol]}))
            verdict = (Verdict(approved=False, stage_failed=1, reasons=stale, close=True)
                       if stale else Verdict(approved=True, close=True))
        else:
            portfolio = await self.portfolio(session, now)
            limits = await self.limits(session)
            margin_fraction = analysis.sizing.margin_fraction if analysis.sizing else 0.0
            order, market = self.plan(
                symbol=signal.symbol, side=signal.action.value, price=analysis.entry_price,
                equity=portfolio.equity, leverage=analysis.leverage,
                margin_fraction=margin_fraction,
            )
            verdict = self.judge(order, market, sent_at=sent_at, now=now, portfolio=portfolio,
                                 limits=limits)
            if any(r.code is ReasonCode.DAILY_LOSS_LIMIT for r in verdict.reasons):
                await self._change_state(session, TradingState.HALTED,
                                         "daily loss limit reached", "risk")
        message_id = str(uuid.uuid5(uuid.UUID(signal.signal_id), "risk.verdict"))
        session.add(VerdictRecord(
            signal_id=signal.signal_id, symbol=signal.symbol, approved=verdict.approved,
            stage_failed=verdict.stage_failed,
            reasons=[r.model_dump(mode="json") for r in verdict.reasons],
            order=verdict.order.model_dump(mode="json") if verdict.order else None,
            message_id=message_id, decided_at=now,
        ))
        if verdict.approved and verdict.order is not None:
            order = verdict.order
            session.add(Reservation(
                signal_id=signal.signal_id, symbol=order.symbol, side=order.side,
                margin=order.margin, notional=order.notional,
                stop_pct=abs(order.price - order.stop_loss) / order.price,
                expires_at=now + timedelta(seconds=self.settings.reservation_ttl_s),
            ))
        payload_type = TradeApproved if verdict.approved else TradeRejected
        envelope = Envelope.wrap(
            payload_type(signal=signal, verdict=verdict, decided_at=now),
            producer=PRODUCER, correlation_id=signal.signal_id, message_id=message_id,
        )
        routing_key = "trade.execute" if verdict.approved else "trade.rejected"
        stage(session, envelope, topology.RISK_MANAGEMENT.name, routing_key)
        first_code = verdict.reasons[0].code.value if verdict.reasons else "none"
        VERDICTS.labels(str(verdict.approved).lower(), first_code).inc()
        log.info("verdict", signal_id=signal.signal_id, symbol=signal.symbol,
                 approved=verdict.approved, stage_failed=verdict.stage_failed,
                 reasons=[r.code.value for r in verdict.reasons], reverse=verdict.reverse)
        return verdict

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
        async with self.sessions() as session:
            portfolio = await self.portfolio(session, now)
            limits = await self.limits(session)
        if equity is not None:
            portfolio = dataclasses.replace(portfolio, equity=equity)
        order, market = self.plan(symbol=symbol, side=side, price=price,
                                  equity=portfolio.equity, leverage=leverage,
                                  margin_fraction=margin_fraction, quantity=quantity,
                                  override=override)
        return self.judge(order, market, sent_at=sent_at, now=now, portfolio=portfolio,
                          limits=limits)

    # --- trading state ---------------------------------------------------------------

    async def change_state(self, state: TradingState | None, reason: str, changed_by: str,
                           limits: dict[str, Any] | None = None,
                           requested_at: datetime | None = None) -> None:
        """A command older than the state's last change (a redelivered /halt after a newer
        /resume) changes nothing."""
        async with self._write_lock:
            async with self.sessions.begin() as session:
                row = await self._state(session, for_update=True)
                if requested_at is not None and requested_at <= row.changed_at:
                    log.info("stale trading-state command ignored", state=state)
                    return
                await self._change_state(session, state, reason, changed_by, limits)
            await self._mirror_state(row.trading_state)
        await self.send_pending()

    async def _change_state(self, session: AsyncSession, state: TradingState | None,
                            reason: str, changed_by: str,
                            limits: dict[str, Any] | None = None) -> None:
        """Within the caller's transaction; the caller mirrors the state once it commits."""
        row = await self._state(session, for_update=True)
        if limits:
            row.limits = {**row.limits, **limits}
        if state is None or row.trading_state == state.value:
            return
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
        stage(session, Envelope.wrap(alert, producer=PRODUCER, correlation_id=str(uuid.uuid4())),
              topology.RISK_MANAGEMENT.name, "risk.alert")
        log.warning("trading state changed", previous=previous, state=state.value,
                    reason=reason, changed_by=changed_by)

    async def _mirror_state(self, state: str) -> None:
        """Live state for the other services (never given a TTL), and the gauge."""
        TRADING_STATE.set(STATE_CODES[TradingState(state)])
        try:
            await self.redis.set(self.keys("risk", "trading_state"), state)
        except Exception as exc:
            log.warning("trading state not mirrored to Redis", error=f"{type(exc).__name__}")

    async def current_state(self) -> RiskState:
        async with self.sessions.begin() as session:
            row = await self._state(session)
        await self._mirror_state(row.trading_state)
        return row

    # --- what EXECUTE reports --------------------------------------------------------

    async def on_position_opened(self, event: PositionOpened) -> None:
        async with self.sessions.begin() as session:
            known = await session.get(KnownPosition, event.position_id)
            if known is None:  # a closed one stays closed, whatever order events come in
                session.add(KnownPosition(
                    position_id=event.position_id, signal_id=event.signal_id,
                    symbol=event.symbol, side=event.side, quantity=event.quantity,
                    entry_price=event.entry_price, margin=event.margin,
                    stop_loss=event.stop_loss, liquidation_price=event.liquidation_price,
                    opened_at=event.opened_at,
                ))
            if event.signal_id:
                await self._release(session, event.signal_id)

    async def on_position_updated(self, event: PositionUpdated) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(KnownPosition)
                .where(KnownPosition.position_id == event.position_id,
                       KnownPosition.closed_at.is_(None))
                .values(quantity=event.quantity, margin=event.margin,
                        stop_loss=event.stop_loss,
                        liquidation_price=event.liquidation_price))

    async def on_position_closed(self, event: PositionClosed) -> None:
        async with self.sessions.begin() as session:
            known = await session.get(KnownPosition, event.position_id)
            if event.remaining_quantity > 0:
                if known is not None and known.closed_at is None and known.quantity > 0:
                    known.margin *= event.remaining_quantity / known.quantity
                    known.quantity = event.remaining_quantity
            elif known is None:  # closed before its opening arrived: remember it as closed
                session.add(KnownPosition(
                    position_id=event.position_id, symbol=event.symbol, side=event.side,
                    quantity=0.0, entry_price=event.entry_price, margin=0.0,
                    liquidation_price=0.0, opened_at=event.closed_at,
                    closed_at=event.closed_at))
            else:
                known.closed_at = event.closed_at
            if event.reason == "stop_loss":
                await session.merge(StopOut(symbol=event.symbol, stopped_at=event.closed_at))

    async def on_order_updated(self, event: OrderUpdated) -> None:
        if (event.signal_id and not event.reduce_only
                and event.status.upper() in RELEASING_ORDER_STATES):
            async with self.sessions.begin() as session:
                await self._release(session, event.signal_id)

    async def _release(self, session: AsyncSession, signal_id: str) -> None:
        await session.execute(
            update(Reservation)
            .where(Reservation.signal_id == signal_id, Reservation.released_at.is_(None))
            .values(released_at=datetime.now(UTC)))

    async def on_account_updated(self, event: AccountUpdated) -> None:
        values = {"equity": event.equity, "day_start_equity": event.day_start_equity,
                  "daily_pnl": event.daily_pnl, "updated_at": event.updated_at}
        async with self._write_lock:
            async with self.sessions.begin() as session:
                # Only a newer snapshot replaces the one kept: late deliveries change nothing.
                newer = await session.execute(
                    update(AccountState)
                    .where(AccountState.id == 1, AccountState.updated_at < event.updated_at)
                    .values(**values))
                if newer.rowcount == 0:
                    if await session.get(AccountState, 1) is not None:
                        return
                    session.add(AccountState(id=1, **values))
                limits = await self.limits(session)
                if event.daily_pnl <= -limits.emergency_loss_pct * event.day_start_equity:
                    await self._change_state(
                        session, TradingState.HALTED,
                        f"daily loss limit reached ({event.daily_pnl:.2f})", "risk")
                state = (await self._state(session)).trading_state
            await self._mirror_state(state)
        await self.send_pending()

    async def on_emergency(self) -> None:
        await self.change_state(TradingState.HALTED, "emergency close by EXECUTE", "execute")

    async def open_positions(self) -> list[KnownPosition]:
        async with self.sessions() as session:
            return list((await session.scalars(
                select(KnownPosition).where(KnownPosition.closed_at.is_(None)))).all())

    async def reservations(self, now: datetime) -> list[Reservation]:
        async with self.sessions() as session:
            return list((await session.scalars(
                select(Reservation).where(Reservation.released_at.is_(None),
                                          Reservation.expires_at > now))).all())
