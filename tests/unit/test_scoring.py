"""The Phoenix 95 score and the decision, checked against brain.md's numbers.

Every expected value below is worked out by hand from the spec ("Phoenix 95 score",
"/analyze response"); none is produced by the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.brain import scoring
from services.brain.analysis import analyze
from services.brain.scoring import Indicators, Performance, Thresholds
from shared.contracts import Action, Decision, ReasonCode, Scores, Signal

# brain.md's defaults.
SPEC = Thresholds(
    min_confidence=0.25, phoenix95=0.45, execution=0.85, kelly_min_trades=10,
    prior_win_rate=0.55,
)
FRESH = Performance()  # no closed trades: the prior applies

def make_signal(
    *,
    symbol: str = "BTCUSDT",
    action: Action = Action.LONG,
    price: float = 43123.5,
    confidence: float = 0.9,
    rsi: float | None = None,
    macd: float | None = None,
    volume: float | None = None,
) -> Signal:
    return Signal(
        signal_id="sig-1", symbol=symbol, action=action, price=price, confidence=confidence,
        rsi=rsi, macd=macd, volume=volume, strategy="tradingview",
        received_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


# --- Derived values m and v ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("macd", "price", "expected_m"),
    [
        (30.0, 2500.0, 600.0),     # 30 / 2500 × 50 000
        (-30.0, 2500.0, 600.0),    # |macd|: the sign does not matter
        (600.0, 50000.0, 600.0),   # at the reference price m is the raw MACD
        (0.0, 2500.0, 0.0),
    ],
)
def test_normalised_macd_rescales_to_the_50000_reference_price(macd, price, expected_m):
    assert scoring.normalised_macd(macd, price) == pytest.approx(expected_m)


def test_normalised_macd_is_absent_when_macd_is_absent():
    assert scoring.normalised_macd(None, 2500.0) is None


@pytest.mark.parametrize(
    ("volume", "price", "expected_v"),
    [
        (10000.0, 2500.0, 25.0),   # 10 000 × 2500 / 1e6
        (100.0, 50000.0, 5.0),
        (0.0, 2500.0, 0.0),
    ],
)
def test_quote_volume_is_in_millions_of_usdt(volume, price, expected_v):
    assert scoring.quote_volume_millions(volume, price) == pytest.approx(expected_v)


def test_quote_volume_is_absent_when_volume_is_absent():
    assert scoring.quote_volume_millions(None, 2500.0) is None


# --- Technical factors --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("rsi", "expected"),
    [
        (None, 1.0),
        (50.0, 1.10),
        (40.0, 1.10), (39.99, 1.05),
        (60.0, 1.10), (60.01, 1.05),
        (30.0, 1.05), (29.99, 0.95),
        (70.0, 1.05), (70.01, 0.95),
        (20.0, 0.95), (19.99, 0.80),
        (80.0, 0.95), (80.01, 0.80),
        (0.0, 0.80), (100.0, 0.80),
    ],
)
def test_rsi_factor_table(rsi, expected):
    assert scoring.rsi_factor(rsi) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (None, 1.0),
        (2000.01, 0.90), (2000.0, 1.10),
        (1000.01, 1.10), (1000.0, 1.05),
        (500.01, 1.05), (500.0, 1.00),
        (100.01, 1.00), (100.0, 0.95),
        (0.0, 0.95),
    ],
)
def test_macd_factor_table(m, expected):
    assert scoring.macd_factor(m) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("macd", "expected_t"),
    [
        # price 2500 (not BTC): m = macd × 20; T = 0.5 × macd_f (rsi absent, round_f 1.0)
        (100.01, 0.5 * 0.90),   # m = 2000.2
        (100.0, 0.5 * 1.10),    # m = 2000
        (50.0, 0.5 * 1.05),     # m = 1000
        (25.0, 0.5 * 1.00),     # m = 500
        (5.01, 0.5 * 1.00),     # m = 100.2
        (5.0, 0.5 * 0.95),      # m = 100
        (-100.0, 0.5 * 1.10),   # |macd|
    ],
)
def test_macd_factor_applies_to_m_not_to_the_raw_macd(macd, expected_t):
    x = Indicators(confidence=0.5, price=2500.0, macd=macd)
    assert scoring.technical_score(x) == pytest.approx(expected_t)


def test_same_macd_scores_differently_at_different_prices():
    # macd 30: at 2500 m = 600 (×1.05); at 50 000 m = 30 (×0.95)
    eth = Indicators(confidence=0.5, price=2500.0, macd=30.0)
    btc = Indicators(confidence=0.5, price=50001.0, macd=30.0)
    assert scoring.technical_score(eth) == pytest.approx(0.525)
    assert scoring.technical_score(btc) == pytest.approx(0.475)


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        (43123.5, 1.0),
        (40000.0, 0.95), (40000.99, 0.95),   # floor(price) is what counts
        (39999.99, 1.0),
        (100000.0, 0.95), (10000.0, 0.95),
        (45000.0, 0.97), (5000.0, 0.97), (15000.0, 0.97), (44999.0, 1.0),
        (43000.0, 0.98), (1000.0, 0.98), (42999.99, 1.0), (43001.0, 1.0),
        (2500.0, 1.0), (999.0, 1.0), (0.5, 1.0),
    ],
)
def test_round_number_factor_table(price, expected):
    assert scoring.round_number_factor(price) == pytest.approx(expected)


def test_technical_score_multiplies_the_factors():
    # c 0.8 × rsi_f(45) 1.10 × macd_f(m 600) 1.05 × round_f(2500) 1.0
    x = Indicators(confidence=0.8, price=2500.0, rsi=45.0, macd=30.0)
    assert scoring.technical_score(x) == pytest.approx(0.924)


def test_technical_score_on_a_round_price():
    # c 0.8 × rsi_f(85) 0.80 × macd_f(m 2500) 0.90 × round_f(40000) 0.95
    x = Indicators(confidence=0.8, price=40000.0, rsi=85.0, macd=2000.0)
    assert scoring.technical_score(x) == pytest.approx(0.5472)


def test_technical_score_is_capped_at_one():
    # 1.0 × 1.10 = 1.1 → 1
    x = Indicators(confidence=1.0, price=43123.5, rsi=50.0)
    assert scoring.technical_score(x) == pytest.approx(1.0)


# --- Phoenix factors ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("rsi", "expected"),
    [
        (None, 0.0),
        (50.0, 0.25),
        (35.0, 0.25), (34.99, 0.15),
        (65.0, 0.25), (65.01, 0.15),
        (25.0, 0.15), (24.99, 0.05),
        (75.0, 0.15), (75.01, 0.05),
        (15.0, 0.05), (14.99, -0.15),
        (85.0, 0.05), (85.01, -0.15),
        (0.0, -0.15), (100.0, -0.15),
    ],
)
def test_rsi_bonus_table(rsi, expected):
    assert scoring.rsi_bonus(rsi) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (None, 0.0),
        (0.0, 0.0),
        (500.0, 0.1),
        (999.0, 0.1998),
        (1000.0, 0.2),
        (1000.01, 0.2),   # capped
        (5000.0, 0.2),
    ],
)
def test_macd_bonus_is_proportional_to_m_and_capped_at_0_2(m, expected):
    assert scoring.macd_bonus(m) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("volume", "expected"),
    [
        # price 2000: v = volume × 2000 / 1e6 = volume / 500
        (None, 0.70),
        (0.0, 0.30),
        (250005.0, 0.95), (250000.0, 1.00),   # v 500.01 / 500
        (50005.0, 1.00), (50000.0, 0.95),     # v 100.01 / 100
        (5005.0, 0.95), (5000.0, 0.85),       # v 10.01 / 10
        (505.0, 0.85), (500.0, 0.70),         # v 1.01 / 1
        (0.5, 0.70),                          # tiny but not zero
    ],
)
def test_volume_factor_table(volume, expected):
    assert scoring.volume_factor(volume, 2000.0) == pytest.approx(expected)


def test_volume_factor_uses_quote_volume_so_the_price_matters():
    # volume 500: at 2000 v = 1 (0.70); at 50 000 v = 25 (0.95)
    assert scoring.volume_factor(500.0, 2000.0) == pytest.approx(0.70)
    assert scoring.volume_factor(500.0, 50000.0) == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (None, 0.5),
        (0.0, 0.5),
        (600.0, 0.59),     # 0.5 + 0.3 × 0.3
        (1000.0, 0.65),
        (2000.0, 0.80),
        (3000.0, 0.95),
        (4000.0, 1.0),     # 1.1 capped
        (10000.0, 1.0),
    ],
)
def test_momentum_factor(m, expected):
    assert scoring.momentum_factor(m) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, 1.10), (2, 1.10),
        (3, 1.05), (5, 1.05),
        (6, 1.00), (10, 1.00),
        (11, 0.90), (50, 0.90),
    ],
)
def test_crowd_factor_table(n, expected):
    assert scoring.crowd_factor(n) == pytest.approx(expected)


def test_phoenix_score_with_no_indicators_uses_the_neutral_values():
    # 0.35×0.5 + 0.25×0.5 + 0.20×0.70 + 0.10×0.5 + 0.10×1.10
    x = Indicators(confidence=0.5, price=43123.5)
    assert scoring.phoenix_score(x, 0) == pytest.approx(0.6)


def test_phoenix_score_weights_every_factor():
    # tech = 0.5 + 0.25 + 0.12 = 0.87; vol (v 25) 0.95; mom 0.59; crowd (n 3) 1.05
    # 0.35×0.8 + 0.25×0.87 + 0.20×0.95 + 0.10×0.59 + 0.10×1.05 = 0.8515
    x = Indicators(confidence=0.8, price=2500.0, rsi=45.0, macd=30.0, volume=10000.0)
    assert scoring.phoenix_score(x, 3) == pytest.approx(0.8515)


# --- Market --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("win_rate", "expected"),
    [
        (0.95, 1.0),
        (0.8001, 1.0), (0.8, 0.9),
        (0.6001, 0.9), (0.6, 0.7),
        (0.4001, 0.7), (0.4, 0.5),
        (0.0, 0.5),
    ],
)
def test_market_score_table_with_enough_history(win_rate, expected):
    perf = Performance(win_rate=win_rate, avg_win=1.0, avg_loss=1.0, total_trades=10)
    assert scoring.market_score(perf, SPEC) == pytest.approx(expected)


def test_market_score_of_a_fresh_system_is_0_56():
    # prior 0.55 → 0.7, × 0.8 for fewer than 10 trades
    assert scoring.market_score(FRESH, SPEC) == pytest.approx(0.56)


@pytest.mark.parametrize("win_rate", [0.0, 0.3, 0.9, 1.0])
def test_market_score_under_ten_trades_uses_the_prior_whatever_the_win_rate(win_rate):
    perf = Performance(win_rate=win_rate, avg_win=1.0, avg_loss=1.0, total_trades=9)
    assert scoring.market_score(perf, SPEC) == pytest.approx(0.56)


@pytest.mark.parametrize(
    ("total_trades", "expected"),
    [
        (9, 0.56),    # prior 0.55 → 0.7 × 0.8
        (10, 1.0),    # win_rate 0.9, no discount
        (11, 1.0),
    ],
)
def test_market_score_switches_to_history_at_kelly_min_trades(total_trades, expected):
    perf = Performance(win_rate=0.9, avg_win=1.0, avg_loss=1.0, total_trades=total_trades)
    assert scoring.market_score(perf, SPEC) == pytest.approx(expected)


# --- Penalties -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("rsi", "expected"),
    [
        (None, 1.0),
        (50.0, 1.0),
        (20.0, 1.0), (19.99, 0.7),
        (80.0, 1.0), (80.01, 0.7),
        (10.0, 0.7), (9.99, 0.5),
        (90.0, 0.7), (90.01, 0.5),
        (0.0, 0.5), (100.0, 0.5),
    ],
)
def test_rsi_penalty_table(rsi, expected):
    assert scoring.rsi_penalty(rsi) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("m", "expected"),
    [
        (None, 1.0),
        (0.0, 1.0),
        (100.0, 1.0), (100.01, 0.9),
        (500.0, 0.9), (500.01, 0.8),
        (1000.0, 0.8), (1000.01, 0.7),
        (5000.0, 0.7),
    ],
)
def test_volatility_penalty_table(m, expected):
    assert scoring.volatility_penalty(m) == pytest.approx(expected)


# --- Absent indicators ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("factor", "neutral"),
    [
        (scoring.rsi_factor, 1.0),
        (scoring.macd_factor, 1.0),
        (scoring.rsi_bonus, 0.0),
        (scoring.macd_bonus, 0.0),
        (scoring.momentum_factor, 0.5),
        (scoring.rsi_penalty, 1.0),
        (scoring.volatility_penalty, 1.0),
    ],
)
def test_absent_indicator_gives_the_neutral_value(factor, neutral):
    assert factor(None) == pytest.approx(neutral)


def test_absent_volume_gives_the_neutral_value():
    assert scoring.volume_factor(None, 43123.5) == pytest.approx(0.70)


def test_scoring_with_every_indicator_absent_is_not_an_error():
    # T = 0.5; P = 0.6 (see above); M 0.56; S = 0.15 + 0.3 + 0.112 = 0.562; no penalties
    s = scoring.score(Indicators(confidence=0.5, price=43123.5), 0, FRESH, SPEC)
    assert s.technical == pytest.approx(0.5)
    assert s.phoenix == pytest.approx(0.6)
    assert s.market == pytest.approx(0.56)
    assert s.composite == pytest.approx(0.562)
    assert s.phoenix95 == pytest.approx(0.562)
    assert s.final_confidence == pytest.approx(0.562 * 1.235)


# --- The whole score -----------------------------------------------------------------------

def test_spec_worked_example_scores():
    x = Indicators(confidence=0.9, price=43123.5, rsi=50.0)
    s = scoring.score(x, 0, FRESH, SPEC)
    assert s.technical == pytest.approx(0.99)
    assert s.phoenix == pytest.approx(0.8025)
    assert s.market == pytest.approx(0.56)
    assert s.composite == pytest.approx(0.81025)
    assert s.phoenix95 == pytest.approx(0.81025)
    assert s.final_confidence == pytest.approx(1.0)


def test_score_at_a_non_btc_price_with_every_indicator():
    # ETH-like: price 2500, macd 30 → m 600; volume 10 000 → v 25; rsi 45; n 3
    # T 0.924, P 0.8515, M 0.56; S = 0.2772 + 0.42575 + 0.112 = 0.81495
    # R = S × rsi_pen 1.0 × volat_pen(600) 0.8 = 0.65196; F = R × 1.235 = 0.8051706
    x = Indicators(confidence=0.8, price=2500.0, rsi=45.0, macd=30.0, volume=10000.0)
    s = scoring.score(x, 3, FRESH, SPEC)
    assert s.technical == pytest.approx(0.924)
    assert s.phoenix == pytest.approx(0.8515)
    assert s.market == pytest.approx(0.56)
    assert s.composite == pytest.approx(0.81495)
    assert s.phoenix95 == pytest.approx(0.65196)
    assert s.final_confidence == pytest.approx(0.8051706)


def test_score_with_both_penalties_history_and_a_crowd():
    # price 40000, macd 2000 → m 2500; volume 3000 → v 120; rsi 85; n 11; 12 trades at 0.65
    # T = 0.8 × 0.80 × 0.90 × 0.95 = 0.5472
    # tech = 0.5 + 0.05 + 0.2 = 0.75; mom = 0.5 + 1.25 × 0.3 = 0.875
    # P = 0.28 + 0.1875 + 0.20 × 1.00 + 0.0875 + 0.10 × 0.90 = 0.845
    # M = 0.9; S = 0.16416 + 0.4225 + 0.18 = 0.76666
    # R = S × 0.7 × 0.7 = 0.3756634; F = R × 1.235 = 0.463944299
    x = Indicators(confidence=0.8, price=40000.0, rsi=85.0, macd=2000.0, volume=3000.0)
    perf = Performance(win_rate=0.65, avg_win=120.0, avg_loss=100.0, total_trades=12)
    s = scoring.score(x, 11, perf, SPEC)
    assert s.technical == pytest.approx(0.5472)
    assert s.phoenix == pytest.approx(0.845)
    assert s.market == pytest.approx(0.9)
    assert s.composite == pytest.approx(0.76666)
    assert s.phoenix95 == pytest.approx(0.3756634)
    assert s.final_confidence == pytest.approx(0.463944299)


def test_phoenix95_only_applies_penalties_and_never_exceeds_the_composite():
    # rsi 5: rsi_f 0.80, bonus −0.15, penalty 0.5. T = 0.7 × 0.8 = 0.56
    # P = 0.245 + 0.25 × 0.35 + 0.14 + 0.05 + 0.11 = 0.6325
    # S = 0.168 + 0.31625 + 0.112 = 0.59625; R = 0.298125
    x = Indicators(confidence=0.7, price=43123.5, rsi=5.0)
    s = scoring.score(x, 0, FRESH, SPEC)
    assert s.composite == pytest.approx(0.59625)
    assert s.phoenix95 == pytest.approx(0.298125)
    assert s.phoenix95 <= s.composite


# --- Decision rules, in order --------------------------------------------------------------

def _scores(phoenix95: float, final: float) -> Scores:
    return Scores(
        technical=0.5, phoenix=0.5, market=0.56, composite=phoenix95, phoenix95=phoenix95,
        final_confidence=final,
    )


PASSING = _scores(0.9, 1.0)
FAILING = _scores(0.1, 0.1)


def test_close_comes_first_even_when_everything_else_fails():
    decision, reasons = scoring.decide(Action.CLOSE, 0.0, FAILING, -1.0, SPEC)
    assert decision is Decision.CLOSE
    assert reasons == []


def test_close_needs_no_scores():
    decision, reasons = scoring.decide(Action.CLOSE, 0.9, None, None, SPEC)
    assert decision is Decision.CLOSE
    assert reasons == []


@pytest.mark.parametrize("action", [Action.LONG, Action.SHORT])
def test_low_confidence_is_rejected_before_any_score_rule(action):
    decision, reasons = scoring.decide(action, 0.24, FAILING, -1.0, SPEC)
    assert decision is Decision.REJECT
    assert len(reasons) == 1
    assert reasons[0].code is ReasonCode.CONFIDENCE_BELOW_MINIMUM
    assert reasons[0].value == pytest.approx(0.24)
    assert reasons[0].limit == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [(0.25, Decision.EXECUTE), (0.2499, Decision.REJECT), (0.0, Decision.REJECT)],
)
def test_min_confidence_boundary(confidence, expected):
    decision, _ = scoring.decide(Action.LONG, confidence, PASSING, 0.1, SPEC)
    assert decision is expected


def test_low_phoenix95_holds_before_the_execution_and_edge_rules():
    decision, reasons = scoring.decide(Action.LONG, 0.9, _scores(0.44, 0.5), -1.0, SPEC)
    assert decision is Decision.HOLD
    assert len(reasons) == 1
    assert reasons[0].code is ReasonCode.PHOENIX_SCORE_BELOW_THRESHOLD
    assert reasons[0].value == pytest.approx(0.44)
    assert reasons[0].limit == pytest.approx(0.45)


@pytest.mark.parametrize(
    ("phoenix95", "expected"),
    [(0.45, Decision.EXECUTE), (0.4499, Decision.HOLD)],
)
def test_phoenix95_threshold_boundary(phoenix95, expected):
    decision, _ = scoring.decide(Action.LONG, 0.9, _scores(phoenix95, 0.9), 0.1, SPEC)
    assert decision is expected


def test_low_final_confidence_holds_before_the_edge_rule():
    decision, reasons = scoring.decide(Action.SHORT, 0.9, _scores(0.7, 0.81), -1.0, SPEC)
    assert decision is Decision.HOLD
    assert len(reasons) == 1
    assert reasons[0].code is ReasonCode.BELOW_EXECUTION_THRESHOLD
    assert reasons[0].value == pytest.approx(0.81)
    assert reasons[0].limit == pytest.approx(0.85)


@pytest.mark.parametrize(
    ("final", "expected"),
    [(0.85, Decision.EXECUTE), (0.8499, Decision.HOLD)],
)
def test_execution_threshold_boundary(final, expected):
    decision, _ = scoring.decide(Action.LONG, 0.9, _scores(0.7, final), 0.1, SPEC)
    assert decision is expected


@pytest.mark.parametrize("kelly", [0.0, -0.2, -1.0])
def test_no_edge_holds(kelly):
    decision, reasons = scoring.decide(Action.LONG, 0.9, PASSING, kelly, SPEC)
    assert decision is Decision.HOLD
    assert len(reasons) == 1
    assert reasons[0].code is ReasonCode.NO_EDGE
    assert reasons[0].value == pytest.approx(kelly)
    assert reasons[0].limit == pytest.approx(0.0)


@pytest.mark.parametrize("kelly", [1e-9, 0.1])
def test_execute_when_every_rule_passes(kelly):
    decision, reasons = scoring.decide(Action.LONG, 0.9, PASSING, kelly, SPEC)
    assert decision is Decision.EXECUTE
    assert reasons == []


# --- Through analyze() ---------------------------------------------------------------------

def test_spec_worked_example_through_analyze(settings):
    result = analyze(make_signal(confidence=0.9, rsi=50.0, price=43123.5), 0, FRESH, settings)
    assert result.decision is Decision.EXECUTE
    assert result.reasons == []
    assert result.signal.symbol == "BTCUSDT"
    assert result.scores is not None
    assert result.scores.technical == pytest.approx(0.99)
    assert result.scores.phoenix == pytest.approx(0.8025)
    assert result.scores.market == pytest.approx(0.56)
    assert result.scores.composite == pytest.approx(0.81025)
    assert result.scores.phoenix95 == pytest.approx(0.81025)
    assert result.scores.final_confidence == pytest.approx(1.0)
    assert result.sizing is not None
    assert result.sizing.win_rate == pytest.approx(0.55)
    assert result.sizing.payoff_ratio == pytest.approx(1.0)
    assert result.sizing.kelly == pytest.approx(0.1)
    assert result.sizing.margin_fraction == pytest.approx(0.02)
    assert result.leverage == 20
    assert result.entry_price == pytest.approx(43123.5)
    assert result.stop_loss == pytest.approx(42261.0)     # 43123.5 × 0.98, tick 0.1
    assert result.take_profit == pytest.approx(43986.0)   # 43123.5 × 1.02, tick 0.1


def test_analyze_close_is_not_scored(settings):
    signal = make_signal(action=Action.CLOSE, confidence=0.1, rsi=95.0)
    result = analyze(signal, 0, FRESH, settings)
    assert result.decision is Decision.CLOSE
    assert result.reasons == []
    assert result.scores is None


def test_analyze_rejects_low_confidence(settings):
    result = analyze(make_signal(confidence=0.2, rsi=50.0), 0, FRESH, settings)
    assert result.decision is Decision.REJECT
    assert [r.code for r in result.reasons] == [ReasonCode.CONFIDENCE_BELOW_MINIMUM]
    assert result.reasons[0].value == pytest.approx(0.2)
    assert result.reasons[0].limit == pytest.approx(0.25)


def test_analyze_holds_on_a_low_phoenix95(settings):
    # c 0.3, rsi 95: T = 0.24; tech 0.35; P = 0.105 + 0.0875 + 0.14 + 0.05 + 0.11 = 0.4925
    # S = 0.072 + 0.24625 + 0.112 = 0.43025; R = S × 0.5 = 0.215125
    result = analyze(make_signal(confidence=0.3, rsi=95.0), 0, FRESH, settings)
    assert result.decision is Decision.HOLD
    assert [r.code for r in result.reasons] == [ReasonCode.PHOENIX_SCORE_BELOW_THRESHOLD]
    assert result.reasons[0].value == pytest.approx(0.215125)
    assert result.reasons[0].limit == pytest.approx(0.45)


def test_analyze_holds_below_the_execution_threshold_at_a_non_btc_price(settings):
    # The ETH-like example above: R 0.65196 passes 0.45, F 0.8051706 misses 0.85.
    signal = make_signal(
        symbol="ETHUSDT", action=Action.SHORT, price=2500.0, confidence=0.8, rsi=45.0,
        macd=30.0, volume=10000.0,
    )
    result = analyze(signal, 3, FRESH, settings)
    assert result.decision is Decision.HOLD
    assert [r.code for r in result.reasons] == [ReasonCode.BELOW_EXECUTION_THRESHOLD]
    assert result.reasons[0].value == pytest.approx(0.8051706)
    assert result.reasons[0].limit == pytest.approx(0.85)
    # short: stop above, target below (risk.md), tick 0.01
    assert result.stop_loss == pytest.approx(2550.0)
    assert result.take_profit == pytest.approx(2450.0)


def test_analyze_holds_with_no_edge_in_the_history(settings):
    # 20 trades at 40 %, b = 1: M = 0.5; S = 0.297 + 0.40125 + 0.1 = 0.79825; F = 0.98583875
    # f* = (0.4 − 0.6) / 1 = −0.2 → NO_EDGE
    perf = Performance(win_rate=0.4, avg_win=100.0, avg_loss=100.0, total_trades=20)
    result = analyze(make_signal(confidence=0.9, rsi=50.0), 0, perf, settings)
    assert result.scores is not None
    assert result.scores.final_confidence == pytest.approx(0.98583875)
    assert result.decision is Decision.HOLD
    assert [r.code for r in result.reasons] == [ReasonCode.NO_EDGE]
    assert result.reasons[0].value == pytest.approx(-0.2)
    assert result.reasons[0].limit == pytest.approx(0.0)


def test_analyze_with_every_indicator_absent_is_not_an_error(settings):
    result = analyze(make_signal(confidence=0.5), 0, FRESH, settings)
    assert result.scores is not None
    assert result.scores.technical == pytest.approx(0.5)
    assert result.scores.phoenix == pytest.approx(0.6)
    assert result.decision is Decision.HOLD   # F = 0.562 × 1.235 = 0.69407 < 0.85
    assert [r.code for r in result.reasons] == [ReasonCode.BELOW_EXECUTION_THRESHOLD]
