"""EXECUTE's settings (execute.md)."""

from __future__ import annotations

from pydantic import Field

from shared.config import EXCHANGE_SECRETS, Settings


class ExecuteSettings(Settings):
    service_name: str = "execute"
    execute_port: int = Field(8102, ge=1, le=65535)
    market_data: str = Field("binance", pattern="^(binance|none)$")

    paper_starting_balance: float = Field(10_000.0, gt=0)
    paper_slippage_bps: float = Field(2.0, ge=0)
    paper_taker_fee: float = Field(0.0004, ge=0, lt=0.01)

    partial_tp_equity_pct: float = Field(0.03, gt=0)
    partial_tp_fraction: float = Field(0.5, gt=0, lt=1)
    emergency_loss_pct: float = Field(0.05, gt=0, lt=1)
    auto_close_hours: float = Field(48.0, gt=0)
    stale_price_s: float = Field(30.0, gt=0)
    reconcile_interval_s: float = Field(60.0, gt=0)
    protective_order_retries: int = Field(3, ge=1)
    # Live mode: how often resting stops and targets are asked whether they filled.
    protective_poll_s: float = Field(5.0, gt=0)
    position_update_interval_s: float = Field(1.0, gt=0)
    account_update_interval_s: float = Field(10.0, gt=0)
    trade_wait_s: float = Field(10.0, gt=0)
    outbox_interval_s: float = Field(5.0, gt=0)

    def required_live_secrets(self) -> tuple[str, ...]:
        return ("phoenix95_api_keys", *EXCHANGE_SECRETS)

    def required_testnet_secrets(self) -> tuple[str, ...]:
        return ("binance_api_key", "binance_secret")
