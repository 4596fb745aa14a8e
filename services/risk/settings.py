"""RISK's settings (risk.md); limits here are defaults that `POST /update` can override."""

from __future__ import annotations

from pydantic import Field

from services.risk.checks import Limits
from shared.config import EXCHANGE_SECRETS, Settings


class RiskSettings(Settings):
    service_name: str = "risk"
    risk_port: int = Field(8101, ge=1, le=65535)

    paper_starting_balance: float = Field(10_000.0, gt=0)
    max_leverage: int = Field(20, ge=1, le=125)
    max_signal_age_s: float = Field(120.0, gt=0)
    cooldown_after_stop_s: float = Field(900.0, ge=0)
    liquidation_buffer: float = Field(0.10, ge=0, lt=1)
    max_open_positions: int = Field(10, ge=1)
    reverse_on_opposite_signal: bool = True
    max_portfolio_risk: float = Field(0.10, gt=0)
    emergency_loss_pct: float = Field(0.05, gt=0, lt=1)
    max_orders_per_minute: int = Field(60, ge=1)
    max_daily_trades: int = Field(100, ge=1)
    reservation_ttl_s: float = Field(60.0, gt=0)
    outbox_interval_s: float = Field(5.0, gt=0)
    # How often the liquidation watch re-reads the open positions and their alert levels.
    positions_refresh_s: float = Field(2.0, gt=0)
    # Live/testnet: how often precision and maintenance brackets are re-read from Binance.
    market_refresh_s: float = Field(3600.0, gt=0)

    # Live mode reads brackets with a signed request: without the exchange keys RISK would silently
    # fall back to the bundled table, so it refuses to start instead. Testnet too: its keys are
    # separate (and free), and a testnet run exists to exercise the exchange path.
    def required_live_secrets(self) -> tuple[str, ...]:
        return ("phoenix95_api_keys", *EXCHANGE_SECRETS)

    def required_testnet_secrets(self) -> tuple[str, ...]:
        return EXCHANGE_SECRETS

    def limits(self, overrides: dict[str, object] | None = None) -> Limits:
        values = {
            "allowed_symbols": frozenset(self.allowed_symbols),
            "max_signal_age_s": self.max_signal_age_s,
            "cooldown_after_stop_s": self.cooldown_after_stop_s,
            "max_leverage": self.max_leverage,
            "max_position_size": self.max_position_size,
            "liquidation_buffer": self.liquidation_buffer,
            "max_open_positions": self.max_open_positions,
            "reverse_on_opposite_signal": self.reverse_on_opposite_signal,
            "max_portfolio_risk": self.max_portfolio_risk,
            "emergency_loss_pct": self.emergency_loss_pct,
            "max_orders_per_minute": self.max_orders_per_minute,
            "max_daily_trades": self.max_daily_trades,
        }
        for name, value in (overrides or {}).items():
            values[name] = frozenset(value) if name == "allowed_symbols" else value  # type: ignore[arg-type]
        return Limits(**values)  # type: ignore[arg-type]
