"""Fractional Kelly sizing, checked against brain.md's "Kelly sizing" numbers.

Every expected value below is worked out by hand from the spec; none is produced by the
code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.brain import sizing
from services.brain.analysis import analyze
from services.brain.scoring import Performance, Thresholds
from shared.contracts import Action, Decision, ReasonCode, Signal

# brain.md's defaults.
SPEC = Thresholds(
    min_confidence=0.25, phoenix95=0.45, execution=0.85, kelly_min_trades=10,
    prior_win_rate=0.55,
)
KELLY_FRACTION = 0.20
MAX_POSITION_SIZE = 0.15
TAKE_PROFIT_PCT = 0.02
STOP_LOSS_PCT = 0.02
FRESH = Performance()

def history(win_rate: float, avg_win: float, avg_loss: float, trades: int = 20) -> Performance:
    return Performance(
        win_rate=win_rate, avg_win=avg_win, avg_loss=avg_loss, total_trades=trades,
    )


def size(perf: Performance, final_confidence: float, *, take_profit_pct: float = TAKE_PROFIT_PCT,
         stop_loss_pct: float = STOP_LOSS_PCT):
    return sizing.size(
        perf, SPEC, final_confidence,
        kelly_multiplier=KELLY_FRACTION, max_position_size=MAX_POSITION_SIZE,
        take_profit_pct=take_profit_pct, stop_loss_pct=stop_loss_pct,
    )


def make_signal(*, confidence: float = 0.9, rsi: float | None = 50.0) -> Signal:
    return Signal(
        signal_id="sig-1", symbol="BTCUSDT", action=Action.LONG, price=43123.5,
        confidence=confidence, rsi=rsi, strategy="tradingview",
        received_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


# --- The settings carry the spec's constants -----------------------------------------------

def test_default_settings_are_the_spec_constants(settings):
    t = settings.thresholds()
    assert t.min_confidence == pytest.approx(0.25)
    assert t.phoenix95 == pytest.approx(0.45)
    assert t.execution == pytest.approx(0.85)
    assert t.kelly_min_trades == 10
    assert t.prior_win_rate == pytest.approx(0.55)
    assert settings.kelly_fraction == pytest.approx(0.20)
    assert settings.max_position_size == pytest.approx(0.15)
    assert settings.take_profit_pct == pytest.approx(0.02)
    assert settings.stop_loss_pct == pytest.approx(0.02)
    assert settings.leverage == 20


# --- f* ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("p", "b", "expected"),
    [
        (0.55, 1.0, 0.1),       # the prior: (0.55 − 0.45) / 1
        (0.6, 1.5, 1 / 3),      # (0.9 − 0.4) / 1.5
        (0.7, 1.5, 0.5),        # (1.05 − 0.3) / 1.5
        (0.55, 2.0, 0.325),     # (1.1 − 0.45) / 2
        (0.8, 4.0, 0.75),       # (3.2 − 0.2) / 4
        (0.9, 4.0, 0.875),      # (3.6 − 0.1) / 4
        (0.5, 1.0, 0.0),        # break-even: no edge
        (0.4, 1.0, -0.2),       # (0.4 − 0.6) / 1
        (0.3, 2.0, -0.05),      # (0.6 − 0.7) / 2
    ],
)
def test_kelly_fraction_formula(p, b, expected):
    assert sizing.kelly_fraction(p, b) == pytest.approx(expected)


# --- b -------------------------------------------------------------------------------------

def test_payoff_ratio_without_history_is_take_profit_over_stop_loss():
    assert sizing.payoff_ratio(FRESH, SPEC, 0.02, 0.02) == pytest.approx(1.0)
    assert sizing.payoff_ratio(FRESH, SPEC, 0.04, 0.02) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("trades", "expected_b"),
    [
        (9, 1.0),     # below KELLY_MIN_TRADES: TP / SL
        (10, 1.5),    # enough history: avg_win / avg_loss = 150 / 100
        (40, 1.5),
    ],
)
def test_payoff_ratio_switches_to_history_at_kelly_min_trades(trades, expected_b):
    perf = history(0.6, avg_win=150.0, avg_loss=100.0, trades=trades)
    assert sizing.payoff_ratio(perf, SPEC, 0.02, 0.02) == pytest.approx(expected_b)


# --- size() --------------------------------------------------------------------------------

def test_size_without_history_uses_the_prior():
    s = size(FRESH, 1.0)
    assert s.win_rate == pytest.approx(0.55)
    assert s.payoff_ratio == pytest.approx(1.0)
    assert s.kelly == pytest.approx(0.1)
    assert s.margin_fraction == pytest.approx(0.02)   # 0.20 × 0.1 × 1.0


def test_size_scales_with_final_confidence():
    assert size(FRESH, 0.9).margin_fraction == pytest.approx(0.018)   # 0.20 × 0.1 × 0.9


def test_size_under_kelly_min_trades_ignores_the_history():
    s = size(history(0.9, avg_win=400.0, avg_loss=100.0, trades=9), 1.0)
    assert s.win_rate == pytest.approx(0.55)
    assert s.payoff_ratio == pytest.approx(1.0)
    assert s.kelly == pytest.approx(0.1)
    assert s.margin_fraction == pytest.approx(0.02)


def test_size_prior_payoff_follows_the_take_profit_and_stop_loss():
    # b = 0.04 / 0.02 = 2; f* = (1.1 − 0.45) / 2 = 0.325; margin = 0.2 × 0.325 × 1.0
    s = size(FRESH, 1.0, take_profit_pct=0.04, stop_loss_pct=0.02)
    assert s.payoff_ratio == pytest.approx(2.0)
    assert s.kelly == pytest.approx(0.325)
    assert s.margin_fraction == pytest.approx(0.065)


def test_size_with_history_uses_win_rate_and_average_win_over_average_loss():
    # p 0.6, b 150 / 100 = 1.5: f* = 1/3; margin = 0.2 × 1/3 × 0.9 = 0.06
    s = size(history(0.6, avg_win=150.0, avg_loss=100.0, trades=10), 0.9)
    assert s.win_rate == pytest.approx(0.6)
    assert s.payoff_ratio == pytest.approx(1.5)
    assert s.kelly == pytest.approx(1 / 3)
    assert s.margin_fraction == pytest.approx(0.06)


@pytest.mark.parametrize(
    ("win_rate", "expected_kelly", "expected_margin"),
    [
        (0.79, 0.7375, 0.1475),   # b 4: (3.16 − 0.21) / 4; 0.2 × 0.7375 under the cap
        (0.8, 0.75, 0.15),        # exactly at the cap
        (0.9, 0.875, 0.15),       # 0.2 × 0.875 = 0.175 → capped at MAX_POSITION_SIZE
        (1.0, 1.0, 0.15),
    ],
)
def test_margin_fraction_is_capped_at_max_position_size(win_rate, expected_kelly,
                                                        expected_margin):
    s = size(history(win_rate, avg_win=400.0, avg_loss=100.0), 1.0)
    assert s.kelly == pytest.approx(expected_kelly)
    assert s.margin_fraction == pytest.approx(expected_margin)


@pytest.mark.parametrize(
    ("win_rate", "avg_win", "expected_kelly"),
    [
        (0.5, 100.0, 0.0),     # b 1: break-even
        (0.4, 100.0, -0.2),    # b 1
        (0.3, 200.0, -0.05),   # b 2
    ],
)
def test_size_reports_a_non_positive_kelly_when_the_history_has_no_edge(
    win_rate, avg_win, expected_kelly,
):
    s = size(history(win_rate, avg_win=avg_win, avg_loss=100.0), 1.0)
    assert s.kelly == pytest.approx(expected_kelly)
    assert s.kelly <= 0


# --- Through analyze() ---------------------------------------------------------------------

def test_analyze_sizes_a_fresh_system_with_the_prior(settings):
    # Worked example: F 1.0, p 0.55, b 1 → f* 0.1, margin 0.02
    result = analyze(make_signal(), 0, FRESH, settings)
    assert result.decision is Decision.EXECUTE
    assert result.sizing is not None
    assert result.sizing.win_rate == pytest.approx(0.55)
    assert result.sizing.payoff_ratio == pytest.approx(1.0)
    assert result.sizing.kelly == pytest.approx(0.1)
    assert result.sizing.margin_fraction == pytest.approx(0.02)


def test_analyze_sizes_from_the_history(settings):
    # 20 trades, p 0.7, b 1.5: M 0.9; S = 0.297 + 0.40125 + 0.18 = 0.87825; F = 1.0846… → 1
    # f* = (1.05 − 0.3) / 1.5 = 0.5; margin = 0.2 × 0.5 × 1.0 = 0.1
    perf = history(0.7, avg_win=150.0, avg_loss=100.0)
    result = analyze(make_signal(), 0, perf, settings)
    assert result.decision is Decision.EXECUTE
    assert result.scores is not None
    assert result.scores.market == pytest.approx(0.9)
    assert result.scores.final_confidence == pytest.approx(1.0)
    assert result.sizing is not None
    assert result.sizing.win_rate == pytest.approx(0.7)
    assert result.sizing.payoff_ratio == pytest.approx(1.5)
    assert result.sizing.kelly == pytest.approx(0.5)
    assert result.sizing.margin_fraction == pytest.approx(0.1)


def test_analyze_caps_the_margin_fraction(settings):
    # p 0.9, b 4: f* 0.875; 0.2 × 0.875 × 1.0 = 0.175 → 0.15
    perf = history(0.9, avg_win=400.0, avg_loss=100.0)
    result = analyze(make_signal(), 0, perf, settings)
    assert result.decision is Decision.EXECUTE
    assert result.sizing is not None
    assert result.sizing.kelly == pytest.approx(0.875)
    assert result.sizing.margin_fraction == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("win_rate", "expected_kelly"),
    [(0.5, 0.0), (0.4, -0.2)],
)
def test_analyze_holds_with_no_edge(settings, win_rate, expected_kelly):
    # F ≥ 0.85 either way (c 0.9, rsi 50), so only the Kelly rule can stop it
    perf = history(win_rate, avg_win=100.0, avg_loss=100.0)
    result = analyze(make_signal(), 0, perf, settings)
    assert result.decision is Decision.HOLD
    assert [r.code for r in result.reasons] == [ReasonCode.NO_EDGE]
    assert result.reasons[0].value == pytest.approx(expected_kelly)
    assert result.reasons[0].limit == pytest.approx(0.0)
