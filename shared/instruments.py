"""Instrument precision and the protective-price rule that BRAIN and RISK both apply.

Paper-mode precision is the approximate Binance table of risk.md; live mode reads markets
from the exchange instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# The prices any input may carry: nothing trades below 1e-9, and a price nearer 0 would size
# an infinite quantity.
MIN_PRICE = 1e-9
MAX_PRICE = 1e12


@dataclass(frozen=True)
class Precision:
    price_tick: float
    quantity_step: float
    min_notional: float


PAPER_PRECISION: dict[str, Precision] = {
    "BTCUSDT": Precision(0.1, 0.001, 100),
    "ETHUSDT": Precision(0.01, 0.001, 20),
    "BNBUSDT": Precision(0.01, 0.01, 5),
    "ADAUSDT": Precision(0.0001, 1, 5),
    "DOGEUSDT": Precision(0.00001, 1, 5),
    "XRPUSDT": Precision(0.0001, 0.1, 5),
    "SOLUSDT": Precision(0.01, 1, 5),
    "AVAXUSDT": Precision(0.001, 1, 5),
    "DOTUSDT": Precision(0.001, 0.1, 5),
    "LINKUSDT": Precision(0.001, 0.01, 5),
}


def round_to_tick(price: float | Decimal, tick: float | None) -> float:
    """Nearest multiple of `tick`, halves rounded up; unchanged when the tick is unknown."""
    exact = price if isinstance(price, Decimal) else Decimal(str(price))
    if not tick:
        return float(exact)
    step = Decimal(str(tick))
    ticks = (exact / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    return float(ticks * step)


def protective_prices(
    side: str, entry_price: float, stop_loss_pct: float, take_profit_pct: float,
    tick: float | None,
) -> tuple[float, float]:
    """(stop_loss, take_profit) for a long or short entered at `entry_price` (risk.md)."""
    # Decimal arithmetic: a float product can fall just short of a half tick and round down.
    direction = 1 if side == "long" else -1
    entry = Decimal(str(entry_price))
    stop = entry * (1 - direction * Decimal(str(stop_loss_pct)))
    target = entry * (1 + direction * Decimal(str(take_profit_pct)))
    return round_to_tick(stop, tick), round_to_tick(target, tick)
