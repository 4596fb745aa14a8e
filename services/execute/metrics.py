"""EXECUTE's metrics (notify.md, "Metrics")."""

from prometheus_client import Counter, Gauge, Histogram

ORDERS = Counter("phoenix95_orders_total", "Order state changes by status", ["status"])
POSITIONS_OPEN = Gauge("phoenix95_positions_open", "Open positions")
EQUITY = Gauge("phoenix95_equity_usdt", "Account equity, USDT")
UNREALIZED_PNL = Gauge("phoenix95_unrealized_pnl_usdt", "Unrealised PnL per symbol, USDT",
                       ["symbol"])
# A gauge: realised PnL goes down as well as up (a counter cannot).
REALIZED_PNL = Gauge("phoenix95_realized_pnl_usdt_total",
                     "Realised PnL since start, USDT, fees included")
TICK_LATENCY = Histogram("phoenix95_monitor_tick_seconds", "Tick to decision, seconds",
                         buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05))
STALE_PRICE_SYMBOLS = Gauge("phoenix95_stale_price_symbols",
                            "Symbols with an open position and no recent price")
