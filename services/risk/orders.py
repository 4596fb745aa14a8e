"""From an analysis (or a what-if) to a concrete order: pure arithmetic (risk.md)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from shared.brackets import Bracket, bracket_for
from shared.contracts import OrderPlan
from shared.instruments import Precision, protective_prices, round_to_tick
from shared.liquidation import distance_to_liquidation, liquidation_price


def floor_to_step(quantity: float, step: float) -> float:
    steps = (Decimal(str(quantity)) / Decimal(str(step))).to_integral_value(rounding=ROUND_FLOOR)
    return float(steps * Decimal(str(step)))


@dataclass(frozen=True)
class Market:
    """What the exchange says about a symbol: precision and maintenance brackets."""

    precision: Precision
    brackets: tuple[Bracket, ...]


@dataclass(frozen=True)
class MaintenanceOverride:
    """What-if values for /check (Binance's reference examples give WB, MMR and cum)."""

    wallet_balance: float | None = None
    maintenance_margin_rate: float | None = None
    maintenance_amount: float | None = None


def build_order(
    *,
    symbol: str,
    side: str,
    price: float,
    equity: float,
    leverage: int,
    market: Market,
    stop_loss_pct: float,
    take_profit_pct: float,
    margin_fraction: float | None = None,
    quantity: float | None = None,
    override: MaintenanceOverride = MaintenanceOverride(),
) -> OrderPlan:
    """margin = f·E, notional = margin·L, quantity = floor_to_step(notional / price), then
    notional and margin recomputed from the quantity actually ordered."""
    if quantity is None:  # no equity (a blown account) sizes nothing, not a negative order
        quantity = max(0.0, (margin_fraction or 0.0) * equity * leverage / price)
    quantity = floor_to_step(quantity, market.precision.quantity_step)
    notional = quantity * price
    margin = notional / leverage
    stop_loss, take_profit = protective_prices(
        side, price, stop_loss_pct, take_profit_pct, market.precision.price_tick
    )
    bracket = bracket_for(market.brackets, notional)
    mmr = override.maintenance_margin_rate
    mmr = bracket.maintenance_margin_rate if mmr is None else mmr
    cum = override.maintenance_amount
    cum = bracket.maintenance_amount if cum is None else cum
    wallet = margin if override.wallet_balance is None else override.wallet_balance
    if quantity > 0:
        lp = liquidation_price(side, quantity, price, wallet, mmr, cum)
        distance = distance_to_liquidation(price, lp)
    else:
        lp, distance = 0.0, 1.0
    return OrderPlan(
        symbol=symbol,
        side=side,
        quantity=quantity,
        price=price,
        notional=notional,
        margin=margin,
        leverage=leverage,
        stop_loss=stop_loss,
        take_profit=take_profit,
        liquidation_price=round_to_tick(lp, market.precision.price_tick),
        maintenance_margin_rate=mmr,
        maintenance_amount=cum,
        distance_to_liquidation=distance,
        risk_at_stop=quantity * abs(price - stop_loss),
    )
