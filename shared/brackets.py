"""Maintenance-margin brackets of Binance USDⓈ-M (risk.md): by notional, not by margin.
RISK sizes liquidation with them; the paper exchange liquidates with them.

Live mode reads them from the exchange (ccxt `fetch_leverage_tiers`); paper mode, and any
failure to read them, uses this bundled table: the first five brackets of each symbol.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bracket:
    floor: float  # notional, USDT, inclusive
    cap: float  # notional, USDT, exclusive
    maintenance_margin_rate: float
    maintenance_amount: float  # Binance's "cum"
    max_leverage: int


def _table(spec: str) -> tuple[Bracket, ...]:
    """`floor–cap: MMR/cum/max·x` items separated by `·`, as risk.md writes them."""
    brackets = []
    for item in spec.split("·"):
        bounds, values = item.strip().split(":")
        floor, cap = bounds.split("–")
        mmr, cum, leverage = values.strip().split("/")
        brackets.append(Bracket(float(floor), float(cap), float(mmr), float(cum),
                                int(leverage.rstrip("x"))))
    return tuple(brackets)


BUNDLED: dict[str, tuple[Bracket, ...]] = {
    symbol: _table(spec)
    for symbol, spec in {
        "BTCUSDT": "0–50000: 0.004/0/125x · 50000–600000: 0.005/50/100x · "
                   "600000–3e6: 0.0065/950/75x · 3e6–1.2e7: 0.01/11450/50x · "
                   "1.2e7–7e7: 0.02/131450/25x",
        "ETHUSDT": "0–50000: 0.004/0/125x · 50000–600000: 0.005/50/100x · "
                   "600000–3e6: 0.0065/950/75x · 3e6–1.2e7: 0.01/11450/50x · "
                   "1.2e7–5e7: 0.02/131450/25x",
        "BNBUSDT": "0–10000: 0.005/0/75x · 10000–50000: 0.006/10/50x · "
                   "50000–200000: 0.01/210/40x · 200000–1.5e6: 0.02/2210/25x · "
                   "1.5e6–3e6: 0.025/9710/20x",
        "ADAUSDT": "0–10000: 0.005/0/75x · 10000–50000: 0.01/50/50x · "
                   "50000–100000: 0.015/300/40x · 100000–500000: 0.02/800/25x · "
                   "500000–1e6: 0.025/3300/20x",
        "DOGEUSDT": "0–10000: 0.005/0/75x · 10000–50000: 0.007/20/50x · "
                    "50000–750000: 0.01/170/40x · 750000–800000: 0.02/7670/25x · "
                    "800000–1.6e6: 0.025/11670/20x",
        "XRPUSDT": "0–10000: 0.005/0/75x · 10000–20000: 0.0065/15/50x · "
                   "20000–160000: 0.01/85/40x · 160000–800000: 0.02/1685/25x · "
                   "800000–1.6e6: 0.025/5685/20x",
        "SOLUSDT": "0–20000: 0.005/0/100x · 20000–100000: 0.0065/30/75x · "
                   "100000–800000: 0.01/380/50x · 800000–4e6: 0.02/8380/25x · "
                   "4e6–8e6: 0.025/28380/20x",
        "AVAXUSDT": "0–5000: 0.005/0/75x · 5000–25000: 0.0065/7.5/50x · "
                    "25000–80000: 0.01/95/40x · 80000–400000: 0.02/895/25x · "
                    "400000–800000: 0.025/2895/20x",
        "DOTUSDT": "0–10000: 0.0065/0/75x · 10000–50000: 0.01/35/50x · "
                   "50000–100000: 0.015/285/40x · 100000–500000: 0.02/785/25x · "
                   "500000–800000: 0.025/3285/20x",
        "LINKUSDT": "0–10000: 0.005/0/75x · 10000–50000: 0.01/50/50x · "
                    "50000–80000: 0.015/300/40x · 80000–400000: 0.02/700/25x · "
                    "400000–800000: 0.025/2700/20x",
    }.items()
}

# A symbol missing from the table gets the most conservative small-cap brackets above.
FALLBACK = BUNDLED["DOTUSDT"]


def bracket_for(brackets: tuple[Bracket, ...], notional: float) -> Bracket:
    """The bracket with floor ≤ notional < cap; beyond the last one, the last one."""
    for bracket in brackets:
        if bracket.floor <= notional < bracket.cap:
            return bracket
    return brackets[-1]
