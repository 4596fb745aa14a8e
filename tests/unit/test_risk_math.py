"""RISK's order math, checked against risk.md ("Building the order", "Liquidation price",
the bundled brackets and the paper precision table).

Every expected value below is worked out by hand from the spec (arithmetic in the comments);
none is produced by the code under test.
"""

from __future__ import annotations

import itertools

import pytest

from services.risk.orders import MaintenanceOverride, Market, build_order, floor_to_step
from shared.brackets import BUNDLED, Bracket, bracket_for
from shared.instruments import PAPER_PRECISION, Precision
from shared.liquidation import distance_to_liquidation, liquidation_price

STOP_LOSS_PCT = 0.02
TAKE_PROFIT_PCT = 0.02


def market(symbol: str) -> Market:
    return Market(precision=PAPER_PRECISION[symbol], brackets=BUNDLED[symbol])


def order(symbol: str = "BTCUSDT", side: str = "long", *, price: float, equity: float = 10_000,
          leverage: int = 20, quantity: float | None = None,
          margin_fraction: float | None = None,
          override: MaintenanceOverride | None = None):
    return build_order(
        symbol=symbol, side=side, price=price, equity=equity, leverage=leverage,
        market=market(symbol), stop_loss_pct=STOP_LOSS_PCT, take_profit_pct=TAKE_PROFIT_PCT,
        quantity=quantity, margin_fraction=margin_fraction,
        override=override or MaintenanceOverride(),
    )


# --- Binance's reference liquidation prices (risk.md table, WB given directly) -------------

# 1) Q·EP = 3683.979 × 1456.84 = 5 366 967.966
#    LP = (1 535 443.01 + 135 365 − 5 366 967.966) / (3683.979 × 0.10 − 3683.979)
#       = −3 696 159.956 / −3315.5811 = 1114.785 (ETH tick 0.01)
# 2) Q·EP = 109.488 × 32 481.98 = 3 556 387.026
#    LP = (1 535 443.01 + 16 300 − 3 556 387.026) / (109.488 × 0.025 − 109.488)
#       = −2 004 644.016 / −106.7508 = 18 778.726 (BTC tick 0.1)
REFERENCES = [
    pytest.param("ETHUSDT", 1_535_443.01, 135_365, 3683.979, 1456.84, 0.10, 1114.78, id="ref-1"),
    pytest.param("BTCUSDT", 1_535_443.01, 16_300, 109.488, 32_481.98, 0.025, 18_778.73,
                 id="ref-2"),
]


@pytest.mark.parametrize(("symbol", "wb", "cum", "q", "ep", "mmr", "lp"), REFERENCES)
def test_liquidation_price_matches_binance_reference(symbol, wb, cum, q, ep, mmr, lp):
    tick = PAPER_PRECISION[symbol].price_tick
    got = liquidation_price("long", q, ep, wb, mmr, cum)
    assert got == pytest.approx(lp, abs=tick)


@pytest.mark.parametrize(("symbol", "wb", "cum", "q", "ep", "mmr", "lp"), REFERENCES)
def test_build_order_with_override_matches_binance_reference(symbol, wb, cum, q, ep, mmr, lp):
    tick = PAPER_PRECISION[symbol].price_tick
    plan = order(symbol, price=ep, quantity=q, override=MaintenanceOverride(
        wallet_balance=wb, maintenance_margin_rate=mmr, maintenance_amount=cum))
    assert plan.quantity == pytest.approx(q)  # already a multiple of the 0.001 step
    assert plan.maintenance_margin_rate == mmr
    assert plan.maintenance_amount == cum
    assert plan.liquidation_price == pytest.approx(lp, abs=tick)


def test_liquidation_price_short_uses_minus_side():
    # Short, s = −1: Q = 2, EP = 60000, WB = 6000, MMR 0.005, cum 50
    # LP = (6000 + 50 + 120000) / (0.01 + 2) = 126050 / 2.01 = 62711.4428
    assert liquidation_price("short", 2.0, 60_000, 6_000, 0.005, 50) == pytest.approx(
        62_711.4428, abs=1e-3)


@pytest.mark.parametrize(("price", "lp", "expected"), [
    (60_000, 57_261.3, 0.045645),  # 2738.7 / 60000
    (60_000, 62_711.4, 0.04519),  # 2711.4 / 60000
    (100, 50, 0.5),
])
def test_distance_to_liquidation(price, lp, expected):
    assert distance_to_liquidation(price, lp) == pytest.approx(expected, abs=1e-6)


# --- The /check example of the spec: 2 BTC at 60000, E 10000, 20x ---------------------------

def test_spec_check_example_long():
    plan = order(price=60_000, quantity=2.0, equity=10_000, leverage=20)
    # notional = 2 × 60000 = 120000 → bracket 50000–600000: MMR 0.005, cum 50
    # margin = WB = 120000 / 20 = 6000
    # SL = 60000 × 0.98 = 58800, TP = 60000 × 1.02 = 61200
    # LP = (6000 + 50 − 120000) / (2 × 0.005 − 2) = −113950 / −1.99 = 57261.3065 → 57261.3
    # d = (60000 − 57261.3065) / 60000 = 0.045645 (spec shows 0.04564)
    # risk_at_stop = 2 × (60000 − 58800) = 2400
    assert plan.symbol == "BTCUSDT"
    assert plan.side == "long"
    assert plan.quantity == pytest.approx(2.0)
    assert plan.price == 60_000
    assert plan.leverage == 20
    assert plan.notional == pytest.approx(120_000)
    assert plan.margin == pytest.approx(6_000)
    assert plan.stop_loss == pytest.approx(58_800)
    assert plan.take_profit == pytest.approx(61_200)
    assert plan.liquidation_price == pytest.approx(57_261.3)
    assert plan.maintenance_margin_rate == pytest.approx(0.005)
    assert plan.maintenance_amount == pytest.approx(50)
    assert plan.distance_to_liquidation == pytest.approx(0.04564, abs=1e-5)
    assert plan.risk_at_stop == pytest.approx(2_400)


def test_spec_check_example_short_is_mirrored():
    plan = order(side="short", price=60_000, quantity=2.0, equity=10_000, leverage=20)
    # Same bracket (notional 120000): MMR 0.005, cum 50; WB = 6000
    # SL = 60000 × 1.02 = 61200, TP = 60000 × 0.98 = 58800
    # LP = (6000 + 50 + 120000) / (0.01 + 2) = 126050 / 2.01 = 62711.4428 → 62711.4 (above EP)
    # d = (62711.4428 − 60000) / 60000 = 0.045191
    # risk_at_stop = 2 × (61200 − 60000) = 2400
    assert plan.side == "short"
    assert plan.notional == pytest.approx(120_000)
    assert plan.margin == pytest.approx(6_000)
    assert plan.stop_loss == pytest.approx(61_200)
    assert plan.take_profit == pytest.approx(58_800)
    assert plan.liquidation_price == pytest.approx(62_711.4)
    assert plan.liquidation_price > plan.price
    assert plan.maintenance_margin_rate == pytest.approx(0.005)
    assert plan.maintenance_amount == pytest.approx(50)
    assert plan.distance_to_liquidation == pytest.approx(0.045191, abs=1e-5)
    assert plan.risk_at_stop == pytest.approx(2_400)


# --- Brackets: by notional, floor inclusive, cap exclusive ----------------------------------

BTC = BUNDLED["BTCUSDT"]


@pytest.mark.parametrize(("notional", "floor", "mmr", "cum", "max_leverage"), [
    (0, 0, 0.004, 0, 125),
    (49_999.99, 0, 0.004, 0, 125),
    (50_000, 50_000, 0.005, 50, 100),  # floor inclusive
    (599_999.99, 50_000, 0.005, 50, 100),  # cap exclusive
    (600_000, 600_000, 0.0065, 950, 75),
    (3e6, 3e6, 0.01, 11_450, 50),
    (1.2e7, 1.2e7, 0.02, 131_450, 25),
    (69_999_999, 1.2e7, 0.02, 131_450, 25),
    (7e7, 1.2e7, 0.02, 131_450, 25),  # beyond the last bracket: the last one
    (5e9, 1.2e7, 0.02, 131_450, 25),
])
def test_bracket_for_btc_boundaries(notional, floor, mmr, cum, max_leverage):
    bracket = bracket_for(BTC, notional)
    assert bracket.floor == floor
    assert bracket.maintenance_margin_rate == mmr
    assert bracket.maintenance_amount == cum
    assert bracket.max_leverage == max_leverage


def test_build_order_picks_bracket_by_notional_not_margin():
    # 1 BTC at 50000: notional 50000 (bracket 2: 0.005 / 50), margin 2500 (would be bracket 1)
    plan = order(price=50_000, quantity=1.0, leverage=20)
    assert plan.maintenance_margin_rate == pytest.approx(0.005)
    assert plan.maintenance_amount == pytest.approx(50)
    # 0.999 BTC at 50000: notional 49950 → bracket 1: 0.004 / 0
    plan = order(price=50_000, quantity=0.999, leverage=20)
    assert plan.maintenance_margin_rate == pytest.approx(0.004)
    assert plan.maintenance_amount == 0


def B(floor, cap, mmr, cum, lev):
    return Bracket(floor, cap, mmr, cum, lev)


@pytest.mark.parametrize(("symbol", "expected"), [
    ("BTCUSDT", (B(0, 50_000, 0.004, 0, 125), B(50_000, 600_000, 0.005, 50, 100),
                 B(600_000, 3e6, 0.0065, 950, 75), B(3e6, 1.2e7, 0.01, 11_450, 50),
                 B(1.2e7, 7e7, 0.02, 131_450, 25))),
    ("ETHUSDT", (B(0, 50_000, 0.004, 0, 125), B(50_000, 600_000, 0.005, 50, 100),
                 B(600_000, 3e6, 0.0065, 950, 75), B(3e6, 1.2e7, 0.01, 11_450, 50),
                 B(1.2e7, 5e7, 0.02, 131_450, 25))),
    ("BNBUSDT", (B(0, 10_000, 0.005, 0, 75), B(10_000, 50_000, 0.006, 10, 50),
                 B(50_000, 200_000, 0.01, 210, 40), B(200_000, 1.5e6, 0.02, 2_210, 25),
                 B(1.5e6, 3e6, 0.025, 9_710, 20))),
    ("AVAXUSDT", (B(0, 5_000, 0.005, 0, 75), B(5_000, 25_000, 0.0065, 7.5, 50),
                  B(25_000, 80_000, 0.01, 95, 40), B(80_000, 400_000, 0.02, 895, 25),
                  B(400_000, 800_000, 0.025, 2_895, 20))),
    ("DOTUSDT", (B(0, 10_000, 0.0065, 0, 75), B(10_000, 50_000, 0.01, 35, 50),
                 B(50_000, 100_000, 0.015, 285, 40), B(100_000, 500_000, 0.02, 785, 25),
                 B(500_000, 800_000, 0.025, 3_285, 20))),
])
def test_bundled_table_matches_spec(symbol, expected):
    assert BUNDLED[symbol] == expected


def test_bundled_table_covers_the_ten_paper_symbols():
    assert set(BUNDLED) == {
        "BTCUSDT", "ETHUSDT", "BNBUSDT", "ADAUSDT", "DOGEUSDT", "XRPUSDT", "SOLUSDT",
        "AVAXUSDT", "DOTUSDT", "LINKUSDT",
    }
    for brackets in BUNDLED.values():
        assert len(brackets) == 5
        assert brackets[0].floor == 0
        # contiguous: each cap is the next floor
        assert all(a.cap == b.floor for a, b in itertools.pairwise(brackets))


@pytest.mark.parametrize(("symbol", "precision"), [
    ("BTCUSDT", Precision(0.1, 0.001, 100)),
    ("ETHUSDT", Precision(0.01, 0.001, 20)),
    ("ADAUSDT", Precision(0.0001, 1, 5)),
    ("DOGEUSDT", Precision(0.00001, 1, 5)),
    ("XRPUSDT", Precision(0.0001, 0.1, 5)),
    ("LINKUSDT", Precision(0.001, 0.01, 5)),
])
def test_paper_precision_matches_spec(symbol, precision):
    assert PAPER_PRECISION[symbol] == precision


# --- floor_to_step ---------------------------------------------------------------------------

@pytest.mark.parametrize(("quantity", "step", "expected"), [
    (0.123456, 0.001, 0.123),
    (0.123, 0.001, 0.123),  # exact multiple (0.123 / 0.001 = 122.99999… in floats)
    (0.0009, 0.001, 0.0),
    (0.0927568, 0.001, 0.092),
    (2.9999, 1, 2.0),
    (3, 1, 3.0),  # exact multiple
    (0.35, 0.1, 0.3),
    (0.3, 0.1, 0.3),  # exact multiple (0.3 / 0.1 = 2.9999999999999996 in floats)
    (0.7, 0.1, 0.7),  # exact multiple (6.999999999999999 in floats)
    (1.239, 0.01, 1.23),
    (0.29, 0.01, 0.29),  # exact multiple (28.999999999999996 in floats)
    (1.15, 0.01, 1.15),  # exact multiple (114.99999999999999 in floats)
    (0.0, 0.01, 0.0),
])
def test_floor_to_step(quantity, step, expected):
    assert floor_to_step(quantity, step) == pytest.approx(expected, abs=1e-12)


# --- margin_fraction → quantity → recomputed notional / margin ------------------------------

def test_margin_fraction_to_quantity_and_recomputed_notional():
    plan = order(price=43_123.5, margin_fraction=0.02, equity=10_000, leverage=20)
    # margin = 0.02 × 10000 = 200; notional = 200 × 20 = 4000
    # quantity = floor_to_step(4000 / 43123.5 = 0.0927568…, 0.001) = 0.092
    # notional = 0.092 × 43123.5 = 3967.362; margin = 3967.362 / 20 = 198.3681
    # SL = 43123.5 × 0.98 = 42261.03 → 42261.0; TP = 43123.5 × 1.02 = 43985.97 → 43986.0
    # bracket 0–50000: MMR 0.004, cum 0
    # LP = (198.3681 − 3967.362) / (0.092 × 0.004 − 0.092) = 43123.5 × 0.95 / 0.996
    #    = 41131.8524 → 41131.9
    # risk_at_stop = 0.092 × (43123.5 − 42261.0) = 0.092 × 862.5 = 79.35
    assert plan.quantity == pytest.approx(0.092)
    assert plan.notional == pytest.approx(3_967.362)
    assert plan.margin == pytest.approx(198.3681)
    assert plan.stop_loss == pytest.approx(42_261.0)
    assert plan.take_profit == pytest.approx(43_986.0)
    assert plan.maintenance_margin_rate == pytest.approx(0.004)
    assert plan.maintenance_amount == 0
    assert plan.liquidation_price == pytest.approx(41_131.9)
    assert plan.risk_at_stop == pytest.approx(79.35)


@pytest.mark.parametrize(("symbol", "price", "fraction", "quantity", "notional"), [
    # SOL step 1: 0.1 × 10000 × 20 / 150.37 = 133.0052… → 133; 133 × 150.37 = 19999.21
    ("SOLUSDT", 150.37, 0.1, 133.0, 19_999.21),
    # XRP step 0.1: 0.05 × 10000 × 10 / 0.6123 = 8165.93… → 8165.9; × 0.6123 = 4999.98057
    ("XRPUSDT", 0.6123, 0.05, 8_165.9, 4_999.98057),
    # BNB step 0.01: 0.1 × 10000 × 20 / 600 = 33.3333… → 33.33; × 600 = 19998
    ("BNBUSDT", 600.0, 0.1, 33.33, 19_998.0),
])
def test_margin_fraction_on_other_steps(symbol, price, fraction, quantity, notional):
    leverage = 10 if symbol == "XRPUSDT" else 20
    plan = order(symbol, price=price, margin_fraction=fraction, equity=10_000, leverage=leverage)
    assert plan.quantity == pytest.approx(quantity)
    assert plan.notional == pytest.approx(notional)
    assert plan.margin == pytest.approx(notional / leverage)


def test_tiny_margin_rounds_quantity_to_zero():
    # margin = 0.0001 × 10000 = 1; notional = 20; quantity = 20 / 60000 = 0.00033 → 0 (step 0.001)
    plan = order(price=60_000, margin_fraction=0.0001, equity=10_000, leverage=20)
    assert plan.quantity == 0
    assert plan.notional == 0
    assert plan.margin == 0
    assert plan.risk_at_stop == 0


def test_explicit_quantity_is_floored_to_step():
    # 0.12345 BTC → 0.123 (step 0.001); notional 0.123 × 40000 = 4920; margin 246
    plan = order(price=40_000, quantity=0.12345)
    assert plan.quantity == pytest.approx(0.123)
    assert plan.notional == pytest.approx(4_920)
    assert plan.margin == pytest.approx(246)


# --- SL / TP rounded to the tick, halves up --------------------------------------------------

@pytest.mark.parametrize(("symbol", "side", "price", "stop_loss", "take_profit"), [
    # ETH tick 0.01: 2000.25 × 0.98 = 1960.245 → 1960.25 (half up; half-even gives 1960.24)
    #                2000.25 × 1.02 = 2040.255 → 2040.26
    ("ETHUSDT", "long", 2_000.25, 1_960.25, 2_040.26),
    # 1000.75 × 0.98 = 980.735 → 980.74; 1000.75 × 1.02 = 1020.765 → 1020.77 (half-even: 1020.76)
    ("ETHUSDT", "long", 1_000.75, 980.74, 1_020.77),
    # short mirrored: SL = 2000.25 × 1.02 = 2040.255 → 2040.26, TP = × 0.98 = 1960.245 → 1960.25
    ("ETHUSDT", "short", 2_000.25, 2_040.26, 1_960.25),
    ("ETHUSDT", "short", 1_000.75, 1_020.77, 980.74),
    # BTC tick 0.1: 1002.5 × 0.98 = 982.45 → 982.5; 1002.5 × 1.02 = 1022.55 → 1022.6
    ("BTCUSDT", "long", 1_002.5, 982.5, 1_022.6),
    # not a half: 43123.5 × 0.98 = 42261.03 → 42261.0; × 1.02 = 43985.97 → 43986.0
    ("BTCUSDT", "long", 43_123.5, 42_261.0, 43_986.0),
    # ADA tick 0.0001: 0.45125 × 0.98 = 0.442225 → 0.4422; × 1.02 = 0.460275 → 0.4603
    ("ADAUSDT", "long", 0.45125, 0.4422, 0.4603),
])
def test_stop_and_target_rounded_half_up_to_tick(symbol, side, price, stop_loss, take_profit):
    plan = order(symbol, side, price=price, quantity=10_000)
    assert plan.stop_loss == pytest.approx(stop_loss, abs=1e-9)
    assert plan.take_profit == pytest.approx(take_profit, abs=1e-9)


@pytest.mark.parametrize("equity", [0.0, -250.0])
def test_an_account_without_equity_sizes_an_empty_order(equity):
    """Not a negative quantity and margin, which would be recorded as such."""
    empty = order(price=60_000.0, equity=equity, margin_fraction=0.1)
    assert (empty.quantity, empty.notional, empty.margin) == (0.0, 0.0, 0.0)
