"""RISK's three stages of pre-trade checks and the liquidation-distance levels, checked
against risk.md ("The three stages", "Liquidation-distance monitoring").

Every check is exercised on both sides of its limit. Orders are built by hand (OrderPlan)
so each number is chosen, and every expected value is worked out by hand from the spec;
none is produced by the code under test.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from services.risk.checks import (
    Exposure,
    Limits,
    Portfolio,
    evaluate_entry,
    portfolio_checks,
    position_checks,
    signal_checks,
)
from services.risk.liquidation_watch import Level, alert_for, level_for
from services.risk.markets import paper_market
from services.risk.orders import build_order
from shared.brackets import bracket_for
from shared.contracts import (
    Action,
    Envelope,
    OrderPlan,
    Reason,
    ReasonCode,
    RiskAlertCode,
    Signal,
    TradeRejected,
    TradingState,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ALLOWED = frozenset({"BTCUSDT", "ETHUSDT", "SOLUSDT"})
LIMITS = Limits(allowed_symbols=ALLOWED)
EQUITY = 10_000.0
BTC_MIN_NOTIONAL = 100.0  # paper precision table
BIG_BRACKET = 125  # BTC bracket 0–50000: 125x


def plan(
    symbol: str = "BTCUSDT", side: str = "long", *, quantity: float = 0.5,
    price: float = 40_000.0, leverage: int = 20, notional: float | None = None,
    margin: float | None = None, stop_loss: float | None = None,
    liquidation_price: float | None = None,
) -> OrderPlan:
    """A hand-made order. Defaults: 0.5 BTC long at 40000, 20x →
    notional 20000, margin 1000, SL 39200 / TP 40800 (2%),
    LP = 40000 × 0.95 / 0.996 = 38152.6 (bracket 0.004 / 0); short: SL 40800, TP 39200,
    LP = 40000 × 1.05 / 1.004 = 41832.7."""
    s = 1 if side == "long" else -1
    notional = quantity * price if notional is None else notional
    margin = notional / leverage if margin is None else margin
    if stop_loss is None:
        stop_loss = price * (1 - s * 0.02)
    if liquidation_price is None:
        liquidation_price = 38_152.6 if side == "long" else 41_832.7
    return OrderPlan(
        symbol=symbol, side=side, quantity=quantity, price=price, notional=notional,
        margin=margin, leverage=leverage, stop_loss=stop_loss,
        take_profit=price * (1 + s * 0.02), liquidation_price=liquidation_price,
        maintenance_margin_rate=0.004, maintenance_amount=0.0,
        distance_to_liquidation=abs(price - liquidation_price) / price,
        risk_at_stop=quantity * abs(price - stop_loss),
    )


def portfolio(**changes) -> Portfolio:
    values = {"state": TradingState.ACTIVE, "equity": EQUITY, "day_start_equity": EQUITY,
              "daily_pnl": 0.0}
    values.update(changes)
    return Portfolio(**values)


def exposure(symbol: str, side: str = "long", *, margin: float = 50.0, notional: float = 1_000.0,
             stop_pct: float = 0.02, reserved: bool = False) -> Exposure:
    return Exposure(symbol=symbol, side=side, margin=margin, notional=notional,
                    stop_pct=stop_pct, reserved=reserved)


def others(n: int, side: str = "long", **kwargs) -> tuple[Exposure, ...]:
    """n positions on symbols other than the order's."""
    return tuple(exposure(f"X{i}USDT", side, **kwargs) for i in range(n))


def codes(reasons: list[Reason]) -> list[ReasonCode]:
    return [r.code for r in reasons]


def only(reasons: list[Reason], code: ReasonCode) -> Reason:
    found = [r for r in reasons if r.code == code]
    assert len(found) == 1, codes(reasons)
    assert found[0].message
    return found[0]


def stage1(*, symbol: str = "BTCUSDT", sent_at: datetime | None = None,
           pf: Portfolio | None = None, limits: Limits = LIMITS) -> list[Reason]:
    return signal_checks(symbol=symbol, sent_at=sent_at, now=NOW,
                         portfolio=pf or portfolio(), limits=limits)


def stage2(order: OrderPlan, *, pf: Portfolio | None = None, bracket_max_leverage: int = 125,
           min_notional: float = BTC_MIN_NOTIONAL, limits: Limits = LIMITS) -> list[Reason]:
    return position_checks(order=order, bracket_max_leverage=bracket_max_leverage,
                           min_notional=min_notional, portfolio=pf or portfolio(),
                           limits=limits)


def stage3(order: OrderPlan, *, pf: Portfolio | None = None,
           limits: Limits = LIMITS) -> list[Reason]:
    return portfolio_checks(order=order, portfolio=pf or portfolio(), limits=limits)


def evaluate(order: OrderPlan, *, pf: Portfolio | None = None, sent_at: datetime | None = None,
             limits: Limits = LIMITS, bracket_max_leverage: int = BIG_BRACKET):
    return evaluate_entry(order=order, sent_at=sent_at, now=NOW,
                          bracket_max_leverage=bracket_max_leverage,
                          min_notional=BTC_MIN_NOTIONAL, portfolio=pf or portfolio(),
                          limits=limits)


def test_limits_defaults_are_the_spec_values():
    assert LIMITS.max_signal_age_s == 120
    assert LIMITS.cooldown_after_stop_s == 900
    assert LIMITS.max_leverage == 20
    assert LIMITS.max_position_size == 0.15
    assert LIMITS.liquidation_buffer == 0.10
    assert LIMITS.max_open_positions == 10
    assert LIMITS.reverse_on_opposite_signal is True
    assert LIMITS.max_portfolio_risk == 0.10
    assert LIMITS.emergency_loss_pct == 0.05
    assert LIMITS.max_orders_per_minute == 60
    assert LIMITS.max_daily_trades == 100


def test_the_base_order_passes_every_stage():
    assert stage1(sent_at=NOW) == []
    assert stage2(plan()) == []
    assert stage3(plan()) == []
    assert stage2(plan(side="short")) == []
    assert stage3(plan(side="short")) == []


# --- Stage 1 — signal ------------------------------------------------------------------------

@pytest.mark.parametrize(("state", "expected"), [
    (TradingState.HALTED, [ReasonCode.TRADING_HALTED]),
    (TradingState.REDUCING, [ReasonCode.REDUCING_ONLY]),
    (TradingState.ACTIVE, []),
])
def test_trading_state(state, expected):
    reasons = stage1(pf=portfolio(state=state))
    assert codes(reasons) == expected
    for r in reasons:
        assert r.message


@pytest.mark.parametrize(("symbol", "fails"), [
    ("BTCUSDT", False),
    ("SOLUSDT", False),
    ("PEPEUSDT", True),
    ("btcusdt", True),
])
def test_symbol_not_allowed(symbol, fails):
    reasons = stage1(symbol=symbol)
    assert codes(reasons) == ([ReasonCode.SYMBOL_NOT_ALLOWED] if fails else [])


@pytest.mark.parametrize(("age_s", "fails"), [
    (0, False),
    (119, False),
    (120, False),  # "older than 120 s": exactly 120 is not older
    (120.5, True),
    (121, True),
    (3_600, True),
])
def test_signal_stale(age_s, fails):
    reasons = stage1(sent_at=NOW - timedelta(seconds=age_s))
    if fails:
        r = only(reasons, ReasonCode.SIGNAL_STALE)
        assert r.value == pytest.approx(age_s)
        assert r.limit == 120
        assert codes(reasons) == [ReasonCode.SIGNAL_STALE]
    else:
        assert reasons == []


def test_no_sent_at_means_no_staleness_check():
    assert stage1(sent_at=None) == []


@pytest.mark.parametrize(("since_s", "fails"), [
    (0, True),
    (899, True),
    (899.9, True),
    (900, False),  # "less than 900 s ago": exactly 900 is over
    (901, False),
    (86_400, False),
])
def test_cooldown_after_stop(since_s, fails):
    pf = portfolio(last_stop_out={"BTCUSDT": NOW - timedelta(seconds=since_s)})
    reasons = stage1(pf=pf)
    if fails:
        r = only(reasons, ReasonCode.COOLDOWN_ACTIVE)
        assert r.value == pytest.approx(since_s)
        assert r.limit == 900
    else:
        assert reasons == []


def test_cooldown_is_per_symbol():
    pf = portfolio(last_stop_out={"ETHUSDT": NOW - timedelta(seconds=10)})
    assert stage1(symbol="BTCUSDT", pf=pf) == []
    assert codes(stage1(symbol="ETHUSDT", pf=pf)) == [ReasonCode.COOLDOWN_ACTIVE]


# --- Stage 2 — position ----------------------------------------------------------------------

@pytest.mark.parametrize(("leverage", "bracket_max", "limit"), [
    (20, 125, None),  # at MAX_LEVERAGE
    (21, 125, 20),  # above MAX_LEVERAGE (20)
    (50, 125, 20),
    (10, 10, None),  # at the bracket's max
    (20, 10, 10),  # above the bracket's max (below MAX_LEVERAGE)
    (20, 19, 19),
])
def test_leverage_exceeds_max(leverage, bracket_max, limit):
    # margin kept at 1000 (10% of equity) so only the leverage can fail
    reasons = stage2(plan(leverage=leverage, margin=1_000), bracket_max_leverage=bracket_max)
    if limit is None:
        assert reasons == []
    else:
        r = only(reasons, ReasonCode.LEVERAGE_EXCEEDS_MAX)
        assert r.value == leverage
        assert r.limit == limit
        assert codes(reasons) == [ReasonCode.LEVERAGE_EXCEEDS_MAX]


@pytest.mark.parametrize(("margin", "size"), [
    (1_000, None),  # 1000 / 10000 = 0.10
    (1_500, None),  # 0.15: at the limit, not above
    (1_501, 0.1501),
    (2_000, 0.20),
    (6_000, 0.60),  # the spec's 2 BTC example: 6000 / 10000
])
def test_position_size_exceeds_max(margin, size):
    reasons = stage2(plan(margin=margin))
    if size is None:
        assert reasons == []
    else:
        r = only(reasons, ReasonCode.POSITION_SIZE_EXCEEDS_MAX)
        assert r.value == pytest.approx(size)
        assert r.limit == 0.15
        assert codes(reasons) == [ReasonCode.POSITION_SIZE_EXCEEDS_MAX]


def test_notional_below_min_when_quantity_rounds_to_zero():
    reasons = stage2(plan(quantity=0.0))  # notional 0, margin 0
    r = only(reasons, ReasonCode.NOTIONAL_BELOW_MIN)
    assert r.value == 0
    assert r.limit == 100
    assert codes(reasons) == [ReasonCode.NOTIONAL_BELOW_MIN]


@pytest.mark.parametrize(("quantity", "notional", "fails"), [
    # BTC min notional 100 at price 40000
    (0.002, 80.0, True),  # 0.002 × 40000 = 80
    (0.0025, 100.0, False),  # exactly the minimum
    (0.003, 120.0, False),
])
def test_notional_below_min(quantity, notional, fails):
    reasons = stage2(plan(quantity=quantity))
    if fails:
        r = only(reasons, ReasonCode.NOTIONAL_BELOW_MIN)
        assert r.value == pytest.approx(notional)
        assert r.limit == 100
        assert codes(reasons) == [ReasonCode.NOTIONAL_BELOW_MIN]
    else:
        assert reasons == []


@pytest.mark.parametrize(("open_margin", "reserved_margin", "order_margin", "free"), [
    # free = 10000 − open − reserved
    (5_000, 4_000, 1_000, None),  # free 1000: margin equal, not above
    (5_000, 4_000, 1_000.5, 1_000),  # 1000.5 > 1000
    (5_000, 4_000.5, 1_000, 999.5),  # the reservation counts
    (9_000.5, 0, 1_000, 999.5),  # open only
    (0, 9_000.5, 1_000, 999.5),  # reserved only
    (0, 0, 1_000, None),
])
def test_insufficient_margin(open_margin, reserved_margin, order_margin, free):
    exposures = []
    if open_margin:
        exposures.append(exposure("ETHUSDT", margin=open_margin))
    if reserved_margin:
        exposures.append(exposure("SOLUSDT", margin=reserved_margin, reserved=True))
    reasons = stage2(plan(margin=order_margin), pf=portfolio(exposures=tuple(exposures)))
    if free is None:
        assert reasons == []
    else:
        r = only(reasons, ReasonCode.INSUFFICIENT_MARGIN)
        assert r.value == pytest.approx(order_margin)
        assert r.limit == pytest.approx(free)
        assert codes(reasons) == [ReasonCode.INSUFFICIENT_MARGIN]


@pytest.mark.parametrize(("side", "stop_loss", "lp", "trigger", "fails"), [
    # long, EP 40000, LP 38000: last 10% starts at 38000 + 0.10 × 2000 = 38200
    ("long", 39_200, 38_000, 38_200, False),
    ("long", 38_200.1, 38_000, 38_200, False),
    ("long", 38_200, 38_000, 38_200, True),  # SL ≤ 38200 fails
    ("long", 38_100, 38_000, 38_200, True),
    ("long", 37_900, 38_000, 38_200, True),  # stop beyond liquidation
    # short, EP 40000, LP 42000: last 10% starts at 42000 − 0.10 × 2000 = 41800
    ("short", 40_800, 42_000, 41_800, False),
    ("short", 41_799.9, 42_000, 41_800, False),
    ("short", 41_800, 42_000, 41_800, True),  # SL ≥ 41800 fails
    ("short", 41_900, 42_000, 41_800, True),
    ("short", 42_100, 42_000, 41_800, True),
])
def test_liquidation_before_stop(side, stop_loss, lp, trigger, fails):
    reasons = stage2(plan(side=side, stop_loss=stop_loss, liquidation_price=lp))
    if fails:
        r = only(reasons, ReasonCode.LIQUIDATION_BEFORE_STOP)
        assert r.value == pytest.approx(stop_loss)
        assert r.limit == pytest.approx(trigger)
        assert codes(reasons) == [ReasonCode.LIQUIDATION_BEFORE_STOP]
    else:
        assert reasons == []


def test_liquidation_before_stop_spec_example_passes_at_20x():
    # 2 BTC at 60000: LP 57261.3, floor = 57261.3 + 0.10 × 2738.7 = 57535.17 < SL 58800
    # (margin 6000 is 60% of a 10000 equity, so use a 100000 equity here)
    order = plan(quantity=2.0, price=60_000, liquidation_price=57_261.3)
    assert stage2(order, pf=portfolio(equity=100_000)) == []


# --- Stage 3 — portfolio ---------------------------------------------------------------------

@pytest.mark.parametrize(("n_open", "n_reserved", "fails"), [
    (0, 0, False),
    (9, 0, False),
    (5, 4, False),  # 9 < 10
    (10, 0, True),
    (6, 4, True),  # open + reserved = 10 ≥ 10
    (0, 10, True),
    (8, 4, True),
])
def test_max_open_positions(n_open, n_reserved, fails):
    # small exposures (notional 1000, stop 2%, shorts so the correlation stays 1):
    # risk ≤ (12 × 20 + 400) / 10000 = 0.064, within 0.10
    exposures = (
        tuple(exposure(f"O{i}USDT", "short") for i in range(n_open))
        + tuple(exposure(f"R{i}USDT", "short", reserved=True) for i in range(n_reserved))
    )
    reasons = stage3(plan(), pf=portfolio(exposures=exposures))
    if fails:
        r = only(reasons, ReasonCode.MAX_OPEN_POSITIONS)
        assert r.value == n_open + n_reserved
        assert r.limit == 10
        assert codes(reasons) == [ReasonCode.MAX_OPEN_POSITIONS]
    else:
        assert reasons == []


@pytest.mark.parametrize(("existing", "fails"), [
    (exposure("BTCUSDT", "long"), True),
    (exposure("BTCUSDT", "long", reserved=True), True),
    (exposure("ETHUSDT", "long"), False),
])
def test_position_already_open(existing, fails):
    reasons = stage3(plan(), pf=portfolio(exposures=(existing,)))
    if fails:
        only(reasons, ReasonCode.POSITION_ALREADY_OPEN)
        assert codes(reasons) == [ReasonCode.POSITION_ALREADY_OPEN]
    else:
        assert reasons == []


def test_opposite_position_is_a_reversal_when_enabled():
    pf = portfolio(exposures=(exposure("BTCUSDT", "short", margin=1_000, notional=20_000),))
    verdict = evaluate(plan(), pf=pf)
    assert verdict.approved is True
    assert verdict.reverse is True
    assert verdict.stage_failed is None
    assert verdict.reasons == []


def test_opposite_position_open_when_reversal_disabled():
    pf = portfolio(exposures=(exposure("BTCUSDT", "short", margin=1_000, notional=20_000),))
    limits = Limits(allowed_symbols=ALLOWED, reverse_on_opposite_signal=False)
    verdict = evaluate(plan(), pf=pf, limits=limits)
    assert verdict.approved is False
    assert verdict.stage_failed == 3
    assert codes(verdict.reasons) == [ReasonCode.OPPOSITE_POSITION_OPEN]
    assert verdict.reverse is False
    # and directly through stage 3
    assert codes(stage3(plan(), pf=pf, limits=limits)) == [ReasonCode.OPPOSITE_POSITION_OPEN]


def test_reversed_position_is_excluded_from_the_position_count():
    # 9 others + the opposite BTC short = 10, but the reversal closes the short: 9 < 10
    # risk: (9 × 1000 × 0.02 + 20000 × 0.02) / 10000 × corr(k=1) = 580 / 10000 = 0.058
    pf = portfolio(exposures=(*others(9, "short"), exposure("BTCUSDT", "short")))
    verdict = evaluate(plan(), pf=pf)
    assert verdict.approved is True
    assert verdict.reverse is True
    # not reversing: the short stays and counts, 10 ≥ 10
    limits = Limits(allowed_symbols=ALLOWED, reverse_on_opposite_signal=False)
    verdict = evaluate(plan(), pf=pf, limits=limits)
    assert verdict.stage_failed == 3
    r = only(verdict.reasons, ReasonCode.MAX_OPEN_POSITIONS)
    assert r.value == 10
    assert r.limit == 10


def test_reversed_position_is_excluded_from_margin_and_risk():
    # the opposite short uses 9500 of margin and carries 200000 × 0.02 = 4000 of risk (0.40);
    # once it is closed: free margin 10000 ≥ 1000, risk 400 / 10000 = 0.04
    short = exposure("BTCUSDT", "short", margin=9_500, notional=200_000)
    verdict = evaluate(plan(), pf=portfolio(exposures=(short,)))
    assert verdict.approved is True
    assert verdict.reverse is True
    # not reversing: free margin = 10000 − 9500 = 500 < 1000
    limits = Limits(allowed_symbols=ALLOWED, reverse_on_opposite_signal=False)
    verdict = evaluate(plan(), pf=portfolio(exposures=(short,)), limits=limits)
    assert verdict.stage_failed == 2
    r = only(verdict.reasons, ReasonCode.INSUFFICIENT_MARGIN)
    assert r.value == pytest.approx(1_000)
    assert r.limit == pytest.approx(500)


# Portfolio risk = Σ notional × stop_pct / E × corr, corr = min(1 + 0.1 (k − 1), 1.5).
# Each position below: notional 5000 at a 2% stop → 100 of risk; E = 10000.
SMALL = {"quantity": 0.125}  # 0.125 × 40000 = 5000, SL 39200 → stop 2%


@pytest.mark.parametrize(("same_side", "opposite_side", "expected"), [
    (0, 0, 0.0100),  # k=1: 100 / 10000 × 1.0
    (1, 0, 0.0220),  # k=2: 200 / 10000 × 1.1
    (2, 0, 0.0360),  # k=3: 300 / 10000 × 1.2
    (4, 0, 0.0700),  # k=5: 500 / 10000 × 1.4
    (5, 0, 0.0900),  # k=6: 600 / 10000 × 1.5
    (6, 0, 0.1050),  # k=7: 700 / 10000 × 1.5 (capped; 1.6 uncapped would give 0.112)
    (8, 0, 0.1350),  # k=9: 900 / 10000 × 1.5 (1.8 uncapped would give 0.162)
    (1, 2, 0.0440),  # k=2: (4 × 100) / 10000 × 1.1; opposite sides add risk, not correlation
    (0, 3, 0.0400),  # k=1: 400 / 10000 × 1.0
])
@pytest.mark.parametrize("side", ["long", "short"])
def test_portfolio_risk_value_and_correlation(side, same_side, opposite_side, expected):
    other_side = "short" if side == "long" else "long"
    exposures = (
        tuple(exposure(f"S{i}USDT", side, notional=5_000) for i in range(same_side))
        + tuple(exposure(f"O{i}USDT", other_side, notional=5_000) for i in range(opposite_side))
    )
    # a zero limit makes the check fail, exposing the computed risk as the reason's value
    limits = Limits(allowed_symbols=ALLOWED, max_portfolio_risk=0.0)
    reasons = stage3(plan(side=side, **SMALL), pf=portfolio(exposures=exposures), limits=limits)
    r = only(reasons, ReasonCode.PORTFOLIO_RISK_EXCEEDS_MAX)
    assert r.value == pytest.approx(expected)
    assert r.limit == 0.0


def test_portfolio_risk_counts_reserved_positions():
    # one reserved long (5000 × 0.02 = 100) + the new long (100): 200 / 10000 × 1.1 = 0.022
    limits = Limits(allowed_symbols=ALLOWED, max_portfolio_risk=0.0)
    pf = portfolio(exposures=(exposure("ETHUSDT", notional=5_000, reserved=True),))
    r = only(stage3(plan(**SMALL), pf=pf, limits=limits), ReasonCode.PORTFOLIO_RISK_EXCEEDS_MAX)
    assert r.value == pytest.approx(0.022)


def test_portfolio_risk_uses_each_positions_stop_pct():
    # ETH long 10000 at a 5% stop = 500; new long 5000 × 2% = 100 → 600 / 10000 × 1.1 = 0.066
    limits = Limits(allowed_symbols=ALLOWED, max_portfolio_risk=0.0)
    pf = portfolio(exposures=(exposure("ETHUSDT", notional=10_000, stop_pct=0.05),))
    r = only(stage3(plan(**SMALL), pf=pf, limits=limits), ReasonCode.PORTFOLIO_RISK_EXCEEDS_MAX)
    assert r.value == pytest.approx(0.066)


@pytest.mark.parametrize(("same_side", "fails"), [
    (5, False),  # k=6: 0.09 ≤ 0.10
    (6, True),  # k=7: 0.105 > 0.10 (with the 1.5 cap)
])
def test_portfolio_risk_default_limit_with_correlation(same_side, fails):
    pf = portfolio(exposures=others(same_side, notional=5_000))
    reasons = stage3(plan(**SMALL), pf=pf)
    if fails:
        r = only(reasons, ReasonCode.PORTFOLIO_RISK_EXCEEDS_MAX)
        assert r.value == pytest.approx(0.105)
        assert r.limit == 0.10
        assert codes(reasons) == [ReasonCode.PORTFOLIO_RISK_EXCEEDS_MAX]
    else:
        assert reasons == []


@pytest.mark.parametrize(("notional", "risk"), [
    (49_950, None),  # 49950 × 0.02 / 10000 = 0.0999
    (50_050, 0.1001),  # 50050 × 0.02 / 10000 = 0.1001
    (100_000, 0.2),
])
def test_portfolio_risk_single_position_around_the_limit(notional, risk):
    # margin kept small: stage 3 does not look at it
    reasons = stage3(plan(notional=notional, margin=1_000))
    if risk is None:
        assert reasons == []
    else:
        r = only(reasons, ReasonCode.PORTFOLIO_RISK_EXCEEDS_MAX)
        assert r.value == pytest.approx(risk)
        assert r.limit == 0.10


@pytest.mark.parametrize(("day_start", "equity", "pnl", "limit", "fails"), [
    (10_000, 10_000, 0.0, -500, False),
    (10_000, 10_000, -499.99, -500, False),  # just above −0.05 × 10000
    (10_000, 10_000, -500.0, -500, True),  # at the limit fails
    (10_000, 10_000, -750.0, -500, True),
    # the limit is on day-start equity (−0.05 × 12000 = −600), not on current equity (−450)
    (12_000, 9_000, -550.0, -600, False),
    (12_000, 9_000, -600.0, -600, True),
])
def test_daily_loss_limit(day_start, equity, pnl, limit, fails):
    pf = portfolio(day_start_equity=day_start, equity=equity, daily_pnl=pnl)
    reasons = stage3(plan(), pf=pf)
    if fails:
        r = only(reasons, ReasonCode.DAILY_LOSS_LIMIT)
        assert r.value == pytest.approx(pnl)
        assert r.limit == pytest.approx(limit)
        assert codes(reasons) == [ReasonCode.DAILY_LOSS_LIMIT]
    else:
        assert reasons == []


@pytest.mark.parametrize(("approvals_last_minute", "fails"), [
    (0, False),
    (59, False),  # this one is the 60th: not more than 60
    (60, True),  # this one would be the 61st
    (75, True),
])
def test_order_rate_exceeded(approvals_last_minute, fails):
    reasons = stage3(plan(), pf=portfolio(approvals_last_minute=approvals_last_minute))
    if fails:
        r = only(reasons, ReasonCode.ORDER_RATE_EXCEEDED)
        assert r.value == approvals_last_minute + 1
        assert r.limit == 60
        assert codes(reasons) == [ReasonCode.ORDER_RATE_EXCEEDED]
    else:
        assert reasons == []


@pytest.mark.parametrize(("approvals_today", "fails"), [
    (0, False),
    (99, False),  # this one is the 100th: not more than 100
    (100, True),  # this one would be the 101st
    (150, True),
])
def test_daily_trades_exceeded(approvals_today, fails):
    reasons = stage3(plan(), pf=portfolio(approvals_today=approvals_today))
    if fails:
        r = only(reasons, ReasonCode.DAILY_TRADES_EXCEEDED)
        assert r.value == approvals_today + 1
        assert r.limit == 100
        assert codes(reasons) == [ReasonCode.DAILY_TRADES_EXCEEDED]
    else:
        assert reasons == []


# --- evaluate_entry: stages in order, first failing stage reported ---------------------------

def test_approval_carries_the_order():
    order = plan()
    verdict = evaluate(order, sent_at=NOW - timedelta(seconds=5))
    assert verdict.approved is True
    assert verdict.stage_failed is None
    assert verdict.reasons == []
    assert verdict.order == order
    assert verdict.reverse is False


def test_halted_with_oversize_order_reports_only_stage_1():
    # margin 6000 = 0.60 of equity (stage 2) and a daily loss (stage 3) are not reported
    order = plan(quantity=2.0, price=60_000, liquidation_price=57_261.3)
    pf = portfolio(state=TradingState.HALTED, daily_pnl=-1_000)
    verdict = evaluate(order, pf=pf)
    assert verdict.approved is False
    assert verdict.stage_failed == 1
    assert codes(verdict.reasons) == [ReasonCode.TRADING_HALTED]
    assert verdict.order == order  # filled in even when rejected


def test_stage_2_failure_does_not_run_stage_3():
    pf = portfolio(daily_pnl=-1_000, approvals_today=500)
    verdict = evaluate(plan(margin=2_000), pf=pf)
    assert verdict.stage_failed == 2
    assert codes(verdict.reasons) == [ReasonCode.POSITION_SIZE_EXCEEDS_MAX]
    assert verdict.order is not None


def test_stage_3_reported_when_stages_1_and_2_pass():
    verdict = evaluate(plan(), pf=portfolio(daily_pnl=-600))
    assert verdict.approved is False
    assert verdict.stage_failed == 3
    assert codes(verdict.reasons) == [ReasonCode.DAILY_LOSS_LIMIT]


def test_all_reasons_of_the_failing_stage_are_reported_stage_1():
    pf = portfolio(state=TradingState.HALTED,
                   last_stop_out={"PEPEUSDT": NOW - timedelta(seconds=60)})
    verdict = evaluate(plan(symbol="PEPEUSDT"), pf=pf, sent_at=NOW - timedelta(seconds=300))
    assert verdict.stage_failed == 1
    assert set(codes(verdict.reasons)) == {
        ReasonCode.TRADING_HALTED, ReasonCode.SYMBOL_NOT_ALLOWED, ReasonCode.SIGNAL_STALE,
        ReasonCode.COOLDOWN_ACTIVE,
    }
    assert len(verdict.reasons) == 4


def test_all_reasons_of_the_failing_stage_are_reported_stage_2():
    # 25x > 20x, margin 2000 = 0.20 > 0.15, SL 38100 ≤ 38000 + 0.1 × 2000 = 38200
    order = plan(leverage=25, margin=2_000, stop_loss=38_100, liquidation_price=38_000)
    verdict = evaluate(order)
    assert verdict.stage_failed == 2
    assert set(codes(verdict.reasons)) == {
        ReasonCode.LEVERAGE_EXCEEDS_MAX, ReasonCode.POSITION_SIZE_EXCEEDS_MAX,
        ReasonCode.LIQUIDATION_BEFORE_STOP,
    }
    assert len(verdict.reasons) == 3


def test_all_reasons_of_the_failing_stage_are_reported_stage_3():
    pf = portfolio(exposures=others(10, "short"), daily_pnl=-500, approvals_last_minute=60,
                   approvals_today=100)
    verdict = evaluate(plan(), pf=pf)
    assert verdict.stage_failed == 3
    assert set(codes(verdict.reasons)) == {
        ReasonCode.MAX_OPEN_POSITIONS, ReasonCode.DAILY_LOSS_LIMIT,
        ReasonCode.ORDER_RATE_EXCEEDED, ReasonCode.DAILY_TRADES_EXCEEDED,
    }
    assert len(verdict.reasons) == 4


# --- No equity (E ≤ 0): a clear rejection whose numbers are finite ---------------------------
# A blown or empty account has no ratio to equity (margin / E, risk / E): the reasons must still
# carry finite numbers, since the verdict is recorded in a JSON column and published as JSON.

def assert_recordable(reasons: list[Reason]) -> None:
    for r in reasons:
        for number in (r.value, r.limit):
            assert number is None or math.isfinite(number), r
    json.dumps([r.model_dump(mode="json") for r in reasons], allow_nan=False)


@pytest.mark.parametrize(("equity", "open_margin", "free"), [
    (0.0, 0, 0.0),  # free = 0 − 0
    (-250.0, 0, -250.0),  # blown account: free = −250
    (-250.0, 500, -750.0),  # −250 − 500 of an open position
])
def test_no_equity_is_insufficient_margin(equity, open_margin, free):
    exposures = (exposure("ETHUSDT", margin=open_margin),) if open_margin else ()
    reasons = stage2(plan(), pf=portfolio(equity=equity, exposures=exposures))  # margin 1000
    r = only(reasons, ReasonCode.INSUFFICIENT_MARGIN)
    assert r.value == pytest.approx(1_000)
    assert r.limit == pytest.approx(free)
    # no POSITION_SIZE_EXCEEDS_MAX: margin / E does not exist (it was inf)
    assert codes(reasons) == [ReasonCode.INSUFFICIENT_MARGIN]
    assert_recordable(reasons)


def test_no_equity_refuses_even_an_order_of_nothing():
    # f × E = 0: quantity 0, margin 0 — still no free margin (0 is not above free 0)
    reasons = stage2(plan(quantity=0.0), pf=portfolio(equity=0.0))
    assert codes(reasons) == [ReasonCode.NOTIONAL_BELOW_MIN, ReasonCode.INSUFFICIENT_MARGIN]
    r = only(reasons, ReasonCode.INSUFFICIENT_MARGIN)
    assert r.value == 0
    assert r.limit == 0
    assert_recordable(reasons)


def test_nan_equity_is_refused_with_recordable_numbers():
    reasons = stage2(plan(), pf=portfolio(equity=math.nan))
    r = only(reasons, ReasonCode.INSUFFICIENT_MARGIN)
    assert r.value == pytest.approx(1_000)
    assert r.limit is None  # free = nan − 0: not a JSON number
    assert codes(reasons) == [ReasonCode.INSUFFICIENT_MARGIN]
    assert_recordable(reasons)


@pytest.mark.parametrize("equity", [0.0, -250.0])
def test_portfolio_risk_without_equity_has_no_ratio(equity):
    # 20000 × 0.02 = 400 at stops, against no equity: refused, value None (it was inf)
    reasons = stage3(plan(), pf=portfolio(equity=equity))
    r = only(reasons, ReasonCode.PORTFOLIO_RISK_EXCEEDS_MAX)
    assert r.value is None
    assert r.limit == 0.10
    assert codes(reasons) == [ReasonCode.PORTFOLIO_RISK_EXCEEDS_MAX]
    assert_recordable(reasons)


@pytest.mark.parametrize("equity", [0.0, -250.0])
@pytest.mark.parametrize("quantity", [None, 0.1])  # from an analysis (f = 0.1), or a what-if
def test_no_equity_verdict_serializes_to_strict_json(equity, quantity):
    """The order built as RISK builds it, judged, and wrapped as the trade.rejected message
    whose `verdict` RISK records: strict JSON (PostgreSQL's json rejects Infinity and NaN)."""
    market = paper_market("BTCUSDT")
    order = build_order(symbol="BTCUSDT", side="long", price=60_000.0, equity=equity,
                        leverage=20, market=market, stop_loss_pct=0.02, take_profit_pct=0.02,
                        margin_fraction=0.1, quantity=quantity)
    verdict = evaluate_entry(
        order=order, sent_at=NOW, now=NOW,
        bracket_max_leverage=bracket_for(market.brackets, order.notional).max_leverage,
        min_notional=market.precision.min_notional,
        portfolio=portfolio(equity=equity, daily_pnl=-10_250.0 if equity < 0 else 0.0),
        limits=LIMITS,
    )
    signal = Signal(signal_id="00000000-0000-4000-8000-000000000001", symbol="BTCUSDT",
                    action=Action.LONG, price=60_000.0, confidence=0.9, strategy="test",
                    sent_at=NOW, received_at=NOW)
    envelope = Envelope.wrap(TradeRejected(signal=signal, verdict=verdict, decided_at=NOW),
                             producer="risk", correlation_id=signal.signal_id)
    recorded = envelope.payload["verdict"]  # what RISK stores (reasons, order) and publishes
    text = json.dumps(recorded, allow_nan=False)
    assert json.loads(text)["reasons"] == [r.model_dump(mode="json") for r in verdict.reasons]
    json.dumps(envelope.payload, allow_nan=False)
    assert verdict.approved is False
    assert verdict.stage_failed == 2
    assert ReasonCode.INSUFFICIENT_MARGIN in codes(verdict.reasons)
    assert ReasonCode.POSITION_SIZE_EXCEEDS_MAX not in codes(verdict.reasons)


# --- Liquidation-distance monitoring ---------------------------------------------------------

D0 = 0.08  # distance at entry: WARNING below 0.5 × 0.08 = 0.04, CRITICAL below 0.25 × 0.08 = 0.02


@pytest.mark.parametrize(("distance", "level"), [
    (0.10, Level.OK),  # further than at entry
    (0.08, Level.OK),
    (0.04, Level.OK),  # exactly half: not below
    (0.0399, Level.WARNING),
    (0.03, Level.WARNING),
    (0.02, Level.WARNING),  # exactly a quarter: not below
    (0.0199, Level.CRITICAL),
    (0.0, Level.CRITICAL),
])
def test_level_for_thresholds(distance, level):
    assert level_for(distance, D0) is level


def test_level_for_is_relative_to_entry_distance():
    # at 20x a fresh position is about 4.6% away: not flagged at entry
    assert level_for(0.04564, 0.04564) is Level.OK
    # 0.03 is OK against 0.05 (warning < 0.025) but WARNING against 0.08 (< 0.04)
    assert level_for(0.03, 0.05) is Level.OK
    assert level_for(0.03, 0.08) is Level.WARNING


def alerts(distances: list[float], entry_distance: float = D0) -> list[RiskAlertCode | None]:
    previous = Level.OK
    raised = []
    for d in distances:
        current = level_for(d, entry_distance)
        raised.append(alert_for(previous, current))
        previous = current
    return raised


W, C = RiskAlertCode.LIQUIDATION_WARNING, RiskAlertCode.LIQUIDATION_CRITICAL


@pytest.mark.parametrize(("distances", "expected"), [
    # warning once, then nothing while staying
    ([0.08, 0.035, 0.03, 0.025], [None, W, None, None]),
    # then critical once, nothing while staying
    ([0.035, 0.015, 0.01, 0.012], [W, C, None, None]),
    # back to warning (not above the warning level): nothing; re-entering critical alerts again
    ([0.035, 0.015, 0.03, 0.015], [W, C, None, C]),
    # recovers above the warning level: re-armed
    ([0.035, 0.05, 0.035], [W, None, W]),
    ([0.035, 0.015, 0.06, 0.035, 0.015], [W, C, None, W, C]),
    # a jump straight to critical raises critical
    ([0.08, 0.01], [None, C]),
    ([0.01, 0.015, 0.03, 0.05], [C, None, None, None]),
])
def test_alert_sequence(distances, expected):
    assert alerts(distances) == expected


@pytest.mark.parametrize(("previous", "current", "expected"), [
    (Level.OK, Level.OK, None),
    (Level.OK, Level.WARNING, W),
    (Level.OK, Level.CRITICAL, C),
    (Level.WARNING, Level.WARNING, None),
    (Level.WARNING, Level.CRITICAL, C),
    (Level.WARNING, Level.OK, None),
    (Level.CRITICAL, Level.CRITICAL, None),
    (Level.CRITICAL, Level.WARNING, None),
    (Level.CRITICAL, Level.OK, None),
])
def test_alert_for_transitions(previous, current, expected):
    assert alert_for(previous, current) == expected
