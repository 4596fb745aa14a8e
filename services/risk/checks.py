"""The three stages of pre-trade checks (risk.md): pure functions over a portfolio snapshot.

Each failing check adds a reason with its numbers; the first stage that fails stops the
evaluation and is reported in `stage_failed`.

Reasons are recorded in a JSON column and published as JSON, so their numbers are always finite:
with no equity (E ≤ 0: a blown or empty account) the ratios to E do not exist, and the order is
refused as `INSUFFICIENT_MARGIN` (there is no free margin) instead of with an infinite size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from shared.contracts import OrderPlan, Reason, ReasonCode, TradingState, Verdict


@dataclass(frozen=True)
class Exposure:
    """An open position, or an approval whose order is not yet filled (a reservation)."""

    symbol: str
    side: str
    margin: float
    notional: float
    stop_pct: float  # |entry − stop| / entry
    reserved: bool = False


@dataclass(frozen=True)
class Portfolio:
    state: TradingState
    equity: float
    day_start_equity: float
    daily_pnl: float  # today's realised + unrealised, UTC day
    exposures: tuple[Exposure, ...] = ()
    last_stop_out: dict[str, datetime] = field(default_factory=dict)
    approvals_last_minute: int = 0
    approvals_today: int = 0


@dataclass(frozen=True)
class Limits:
    allowed_symbols: frozenset[str]
    max_signal_age_s: float = 120
    cooldown_after_stop_s: float = 900
    max_leverage: int = 20
    max_position_size: float = 0.15
    liquidation_buffer: float = 0.10
    max_open_positions: int = 10
    reverse_on_opposite_signal: bool = True
    max_portfolio_risk: float = 0.10
    emergency_loss_pct: float = 0.05
    max_orders_per_minute: int = 60
    max_daily_trades: int = 100


def _finite(number: float | None) -> float | None:
    """None for a number JSON cannot carry (inf, nan): a reason must always be recordable."""
    return number if number is None or math.isfinite(number) else None


def _reason(code: ReasonCode, value: float | None, limit: float | None, message: str) -> Reason:
    return Reason(code=code, value=_finite(value), limit=_finite(limit), message=message)


def signal_checks(
    *, symbol: str, sent_at: datetime | None, now: datetime, portfolio: Portfolio,
    limits: Limits,
) -> list[Reason]:
    """Stage 1, for new entries (closes pass it in every state)."""
    reasons = []
    if portfolio.state is TradingState.HALTED:
        reasons.append(_reason(ReasonCode.TRADING_HALTED, None, None,
                               "trading is halted: no new entries"))
    elif portfolio.state is TradingState.REDUCING:
        reasons.append(_reason(ReasonCode.REDUCING_ONLY, None, None,
                               "trading is reducing: only closes and reductions"))
    if symbol not in limits.allowed_symbols:
        reasons.append(_reason(ReasonCode.SYMBOL_NOT_ALLOWED, None, None,
                               f"{symbol} is not in ALLOWED_SYMBOLS"))
    if sent_at is not None:
        age = (now - sent_at).total_seconds()
        if age > limits.max_signal_age_s:
            reasons.append(_reason(ReasonCode.SIGNAL_STALE, age, limits.max_signal_age_s,
                                   f"signal sent {age:.0f} s ago"))
    stopped = portfolio.last_stop_out.get(symbol)
    if stopped is not None:
        since = (now - stopped).total_seconds()
        if since < limits.cooldown_after_stop_s:
            reasons.append(_reason(ReasonCode.COOLDOWN_ACTIVE, since, limits.cooldown_after_stop_s,
                                   f"{symbol} was stopped out {since:.0f} s ago"))
    return reasons


def position_checks(
    *, order: OrderPlan, bracket_max_leverage: int, min_notional: float,
    portfolio: Portfolio, limits: Limits, replaced: Exposure | None = None,
) -> list[Reason]:
    """Stage 2: the order itself. `replaced` is a position a reversal closes first."""
    reasons = []
    max_leverage = min(limits.max_leverage, bracket_max_leverage)
    if order.leverage > max_leverage:
        reasons.append(_reason(ReasonCode.LEVERAGE_EXCEEDS_MAX, order.leverage, max_leverage,
                               f"leverage {order.leverage}x above {max_leverage}x"))
    has_equity = portfolio.equity > 0  # False for nan too: no ratio to E exists
    if has_equity:  # without equity, INSUFFICIENT_MARGIN below refuses the order
        size = order.margin / portfolio.equity
        if size > limits.max_position_size:
            reasons.append(_reason(ReasonCode.POSITION_SIZE_EXCEEDS_MAX, size,
                                   limits.max_position_size,
                                   f"margin is {size:.2%} of equity"))
    if order.quantity <= 0 or order.notional < min_notional:
        reasons.append(_reason(ReasonCode.NOTIONAL_BELOW_MIN, order.notional, min_notional,
                               f"notional {order.notional:.2f} below the market minimum"))
    used = sum(e.margin for e in portfolio.exposures if e is not replaced)
    free = portfolio.equity - used
    if not has_equity:
        reasons.append(_reason(ReasonCode.INSUFFICIENT_MARGIN, order.margin, free,
                               f"equity {portfolio.equity:.2f} is not positive: no free margin "
                               f"(free {free:.2f}) for margin {order.margin:.2f}"))
    elif order.margin > free:
        reasons.append(_reason(ReasonCode.INSUFFICIENT_MARGIN, order.margin, free,
                               f"margin {order.margin:.2f} above free margin {free:.2f}"))
    buffer = limits.liquidation_buffer
    lp, ep, sl = order.liquidation_price, order.price, order.stop_loss
    if order.side == "long":
        trigger_floor = lp + buffer * (ep - lp)
        too_late = sl <= trigger_floor
    else:
        trigger_floor = lp - buffer * (lp - ep)
        too_late = sl >= trigger_floor
    if order.quantity > 0 and too_late:
        reasons.append(_reason(ReasonCode.LIQUIDATION_BEFORE_STOP, sl, trigger_floor,
                               f"stop {sl} is not before the last {buffer:.0%} of the way to "
                               f"liquidation at {lp}"))
    return reasons


def opposite_exposure(order: OrderPlan, portfolio: Portfolio) -> Exposure | None:
    return next((e for e in portfolio.exposures
                 if e.symbol == order.symbol and e.side != order.side), None)


def portfolio_checks(
    *, order: OrderPlan, portfolio: Portfolio, limits: Limits, replaced: Exposure | None = None,
) -> list[Reason]:
    """Stage 3: the portfolio with the new position, less a position a reversal closes."""
    reasons = []
    same = [e for e in portfolio.exposures if e.symbol == order.symbol]
    opposite = opposite_exposure(order, portfolio)
    others = [e for e in portfolio.exposures if e is not replaced]

    if len(others) >= limits.max_open_positions:
        reasons.append(_reason(ReasonCode.MAX_OPEN_POSITIONS, len(others),
                               limits.max_open_positions,
                               f"{len(others)} positions open or reserved"))
    if any(e.side == order.side for e in same):
        reasons.append(_reason(ReasonCode.POSITION_ALREADY_OPEN, None, None,
                               f"a {order.side} {order.symbol} position is already open"))
    if opposite is not None and not limits.reverse_on_opposite_signal:
        reasons.append(_reason(ReasonCode.OPPOSITE_POSITION_OPEN, None, None,
                               f"an opposite {order.symbol} position is open"))

    new_stop_pct = abs(order.price - order.stop_loss) / order.price
    at_risk = sum(e.notional * e.stop_pct for e in others) + order.notional * new_stop_pct
    k = 1 + sum(1 for e in others if e.side == order.side)
    correlation = min(1 + 0.1 * (k - 1), 1.5)
    if not portfolio.equity > 0:
        # no ratio to equity exists: any risk is too much (value None, not inf)
        reasons.append(_reason(ReasonCode.PORTFOLIO_RISK_EXCEEDS_MAX, None,
                               limits.max_portfolio_risk,
                               f"equity {portfolio.equity:.2f} is not positive: {at_risk:.2f} "
                               f"at stops cannot be covered"))
    else:
        risk = at_risk / portfolio.equity * correlation
        if risk > limits.max_portfolio_risk:
            reasons.append(_reason(ReasonCode.PORTFOLIO_RISK_EXCEEDS_MAX, risk,
                                   limits.max_portfolio_risk,
                                   f"portfolio risk at stops {risk:.2%} of equity"))
    loss_limit = -limits.emergency_loss_pct * portfolio.day_start_equity
    if portfolio.daily_pnl <= loss_limit:
        reasons.append(_reason(ReasonCode.DAILY_LOSS_LIMIT, portfolio.daily_pnl, loss_limit,
                               f"today's PnL {portfolio.daily_pnl:.2f} reached the loss limit"))
    if portfolio.approvals_last_minute + 1 > limits.max_orders_per_minute:
        reasons.append(_reason(ReasonCode.ORDER_RATE_EXCEEDED,
                               portfolio.approvals_last_minute + 1, limits.max_orders_per_minute,
                               "too many approvals in the last minute"))
    if portfolio.approvals_today + 1 > limits.max_daily_trades:
        reasons.append(_reason(ReasonCode.DAILY_TRADES_EXCEEDED, portfolio.approvals_today + 1,
                               limits.max_daily_trades, "too many trades today"))
    return reasons


def evaluate_entry(
    *, order: OrderPlan, sent_at: datetime | None, now: datetime, bracket_max_leverage: int,
    min_notional: float, portfolio: Portfolio, limits: Limits,
) -> Verdict:
    """All three stages for a new entry; stops at the first stage that fails."""
    stage1 = signal_checks(symbol=order.symbol, sent_at=sent_at, now=now, portfolio=portfolio,
                           limits=limits)
    if stage1:
        return Verdict(approved=False, stage_failed=1, reasons=stage1, order=order)
    opposite = opposite_exposure(order, portfolio)
    replaced = opposite if limits.reverse_on_opposite_signal else None
    stage2 = position_checks(order=order, bracket_max_leverage=bracket_max_leverage,
                             min_notional=min_notional, portfolio=portfolio, limits=limits,
                             replaced=replaced)
    if stage2:
        return Verdict(approved=False, stage_failed=2, reasons=stage2, order=order)
    stage3 = portfolio_checks(order=order, portfolio=portfolio, limits=limits, replaced=replaced)
    if stage3:
        return Verdict(approved=False, stage_failed=3, reasons=stage3, order=order)
    return Verdict(approved=True, order=order, reverse=replaced is not None)
