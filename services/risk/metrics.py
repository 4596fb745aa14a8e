"""RISK's metrics (notify.md, "Metrics")."""

from prometheus_client import Counter, Gauge

VERDICTS = Counter("phoenix95_risk_verdicts_total", "Verdicts by outcome and first reason code",
                   ["approved", "code"])
TRADING_STATE = Gauge("phoenix95_trading_state", "0 active, 1 reducing, 2 halted")
LIQUIDATION_DISTANCE = Gauge("phoenix95_distance_to_liquidation_ratio",
                             "Distance from the mark price to liquidation, per symbol",
                             ["symbol"])
