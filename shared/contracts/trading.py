"""EXECUTE's events about orders, positions and the account (execute.md), which RISK and
NOTIFY consume. Routing keys: `order.<status>.<SYMBOL>`, `position.<opened|updated|closed>.
<SYMBOL>`, `account.updated`, `account.emergency` on `trading.execution`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.contracts.envelope import MessagePayload, register


@register
class OrderUpdated(MessagePayload):
    message_type = "order.updated"

    client_order_id: str
    signal_id: str | None = None
    symbol: str
    side: str
    status: str  # NEW, SUBMITTED, FILLED, REJECTED, CANCELED, UNKNOWN
    quantity: float
    filled_quantity: float = 0.0
    average_price: float | None = None
    reduce_only: bool = False
    error: str | None = None
    updated_at: datetime


@register
class PositionOpened(MessagePayload):
    message_type = "position.opened"

    position_id: str
    signal_id: str | None = None
    symbol: str
    side: str
    quantity: float
    entry_price: float
    margin: float
    leverage: int
    stop_loss: float | None = None
    take_profit: float | None = None
    liquidation_price: float
    opened_at: datetime


@register
class PositionUpdated(MessagePayload):
    message_type = "position.updated"

    position_id: str
    symbol: str
    side: str
    quantity: float
    entry_price: float
    margin: float
    stop_loss: float | None = None
    liquidation_price: float
    mark_price: float | None = None
    unrealized_pnl: float = 0.0
    updated_at: datetime


@register
class PositionClosed(MessagePayload):
    message_type = "position.closed"

    position_id: str
    symbol: str
    side: str
    quantity: float
    entry_price: float
    exit_price: float
    realized_pnl: float
    roe: float
    reason: str  # stop_loss, take_profit, signal, manual, partial_take_profit, emergency, …
    remaining_quantity: float = 0.0  # above 0 after a partial close
    closed_at: datetime


@register
class AccountUpdated(MessagePayload):
    message_type = "account.updated"

    wallet_balance: float
    equity: float
    used_margin: float
    free_margin: float
    day_start_equity: float
    daily_pnl: float
    updated_at: datetime


@register
class EmergencyCloseTriggered(MessagePayload):
    message_type = "account.emergency"

    daily_pnl: float
    day_start_equity: float
    threshold: float
    triggered_at: datetime


@register
class ExecutionAlertRaised(MessagePayload):
    """EXECUTE's own alerts, on `alert.<CODE>.<SYMBOL>` (e.g. UNPROTECTED_POSITION_CLOSED,
    STALE_PRICES, EXTERNAL_POSITION_ADOPTED, QUANTITY_CORRECTED)."""

    message_type = "execution.alert"

    code: str
    severity: str  # "info" | "warning" | "critical"
    message: str
    symbol: str | None = None
    details: dict[str, Any] = {}
    raised_at: datetime


@register
class ClosePosition(MessagePayload):
    """Command on `phoenix95.control` / `control.close_position` (Telegram /close)."""

    message_type = "control.close_position"

    symbol: str | None = None
    position_id: str | None = None
    all: bool = False
    fraction: float = 1.0
    requested_by: str
