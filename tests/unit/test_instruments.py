"""Tick rounding and protective prices (risk.md, "Building the order")."""

from __future__ import annotations

import pytest

from shared.instruments import PAPER_PRECISION, protective_prices, round_to_tick


@pytest.mark.parametrize(
    ("price", "tick", "expected"),
    [
        # tick 0.1 (BTCUSDT)
        (43123.5 * 0.98, 0.1, 42261.0),  # 42261.03
        (43123.5 * 1.02, 0.1, 43986.0),  # 43985.97
        (42261.04, 0.1, 42261.0),
        (42261.05, 0.1, 42261.1),  # half → up
        (42261.06, 0.1, 42261.1),
        (100.05, 0.1, 100.1),
        (100.0, 0.1, 100.0),
        # tick 0.01 (ETHUSDT)
        (2345.674, 0.01, 2345.67),
        (2345.675, 0.01, 2345.68),  # half → up
        (1.005, 0.01, 1.01),  # half → up (round(1.005, 2) would give 1.0)
        (2.675, 0.01, 2.68),  # half → up (round(2.675, 2) would give 2.67)
        (1.004, 0.01, 1.0),
        # tick 0.00001 (DOGEUSDT)
        (0.123454, 0.00001, 0.12345),
        (0.123455, 0.00001, 0.12346),  # half → up
        (0.0800049, 0.00001, 0.08),
        (0.08000501, 0.00001, 0.08001),
    ],
)
def test_round_to_tick_is_nearest_tick_half_up(price: float, tick: float, expected: float) -> None:
    assert round_to_tick(price, tick) == expected


@pytest.mark.parametrize(("price", "tick"), [(42261.0, 0.1), (2345.67, 0.01), (0.12345, 0.00001)])
def test_a_price_on_the_tick_is_unchanged(price: float, tick: float) -> None:
    assert round_to_tick(price, tick) == price


@pytest.mark.parametrize("price", [42261.03, 0.1234567, 1.005])
def test_an_unknown_tick_leaves_the_price_alone(price: float) -> None:
    assert round_to_tick(price, None) == price


@pytest.mark.parametrize("symbol", sorted(PAPER_PRECISION))
def test_rounding_with_every_paper_tick_lands_on_the_tick(symbol: str) -> None:
    tick = PAPER_PRECISION[symbol].price_tick
    rounded = round_to_tick(1.23456789 * 1000 * tick, tick)
    assert rounded == pytest.approx(1235 * tick)
    assert abs(rounded / tick - round(rounded / tick)) < 1e-9


def test_paper_ticks_of_the_symbols_used_here() -> None:
    assert PAPER_PRECISION["BTCUSDT"].price_tick == 0.1
    assert PAPER_PRECISION["ETHUSDT"].price_tick == 0.01
    assert PAPER_PRECISION["DOGEUSDT"].price_tick == 0.00001


@pytest.mark.parametrize(
    ("entry", "tick", "long_sl", "long_tp"),
    [
        (43123.5, 0.1, 42261.0, 43986.0),  # 42261.03 / 43985.97
        (100.0, 0.1, 98.0, 102.0),
        (2345.67, 0.01, 2298.76, 2392.58),  # 2298.7566 / 2392.5834
        (0.12345, 0.00001, 0.12098, 0.12592),  # 0.120981 / 0.125919
    ],
)
def test_long_stop_below_and_target_above(
    entry: float, tick: float, long_sl: float, long_tp: float
) -> None:
    assert protective_prices("long", entry, 0.02, 0.02, tick) == (long_sl, long_tp)


@pytest.mark.parametrize(
    ("entry", "tick", "short_sl", "short_tp"),
    [
        (43123.5, 0.1, 43986.0, 42261.0),
        (100.0, 0.1, 102.0, 98.0),
        (2345.67, 0.01, 2392.58, 2298.76),
        (0.12345, 0.00001, 0.12592, 0.12098),
    ],
)
def test_short_is_mirrored(entry: float, tick: float, short_sl: float, short_tp: float) -> None:
    assert protective_prices("short", entry, 0.02, 0.02, tick) == (short_sl, short_tp)


@pytest.mark.parametrize(
    ("entry", "tick"), [(43123.5, 0.1), (2345.67, 0.01), (0.12345, 0.00001), (77.7, None)]
)
def test_short_prices_are_the_long_prices_swapped(entry: float, tick: float | None) -> None:
    stop_long, target_long = protective_prices("long", entry, 0.02, 0.02, tick)
    stop_short, target_short = protective_prices("short", entry, 0.02, 0.02, tick)
    assert (stop_short, target_short) == (target_long, stop_long)
    assert stop_long < entry < target_long


def test_stop_and_target_percentages_are_applied_separately() -> None:
    assert protective_prices("long", 100.0, 0.01, 0.05, 0.1) == (99.0, 105.0)
    assert protective_prices("short", 100.0, 0.01, 0.05, 0.1) == (101.0, 95.0)


def test_protective_prices_without_a_tick_are_unrounded() -> None:
    stop, target = protective_prices("long", 43123.5, 0.02, 0.02, None)
    assert stop == pytest.approx(42261.03)
    assert target == pytest.approx(43985.97)


@pytest.mark.parametrize(
    ("side", "entry", "tick", "expected"),
    [
        # Exact stop/target land on a half tick; risk.md rounds them half up.
        ("long", 102.5, 0.1, (100.5, 104.6)),  # 100.45 / 104.55
        ("short", 102.5, 0.1, (104.6, 100.5)),
        ("long", 40972.5, 0.1, (40153.1, 41792.0)),  # 40153.05 / 41791.95
        ("short", 40972.5, 0.1, (41792.0, 40153.1)),
        ("long", 2012.25, 0.01, (1972.01, 2052.5)),  # 1972.005 / 2052.495
        ("long", 1.025, 0.001, (1.005, 1.046)),  # 1.0045 / 1.0455
    ],
)
def test_half_tick_stops_and_targets_round_up(
    side: str, entry: float, tick: float, expected: tuple[float, float]
) -> None:
    assert protective_prices(side, entry, 0.02, 0.02, tick) == expected
