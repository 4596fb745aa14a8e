"""Binance USDⓈ-M liquidation price, isolated margin, one-way mode (risk.md)."""

from __future__ import annotations


def liquidation_price(
    side: str, quantity: float, entry_price: float, wallet_balance: float,
    maintenance_margin_rate: float, maintenance_amount: float,
) -> float:
    """LP = (WB + cum − s·Q·EP) / (Q·MMR − s·Q), s = +1 long, −1 short. Never below 0."""
    s = 1 if side == "long" else -1
    q = quantity
    lp = (wallet_balance + maintenance_amount - s * q * entry_price) / (
        q * maintenance_margin_rate - s * q
    )
    return max(lp, 0.0)


def distance_to_liquidation(price: float, liquidation: float) -> float:
    """d = |price − LP| / price."""
    return abs(price - liquidation) / price
