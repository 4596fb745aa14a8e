"""What the dashboard shows, folded from NOTIFY's event tap and the polled service APIs.

Pure: no I/O and no clock. Every change is given its time, so the folding is tested with
numbers, and the same events give the same state.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from services.risk.liquidation_watch import Level, level_for
from shared.contracts import (
    AccountUpdated,
    ChangeTradingState,
    ClosePosition,
    Decision,
    EmergencyCloseTriggered,
    Envelope,
    ExecutionAlertRaised,
    MessagePayload,
    OrderUpdated,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    RiskAlertCode,
    RiskAlertRaised,
    SignalAnalyzed,
    SignalReceived,
    TradeApproved,
    TradeRejected,
)
from shared.liquidation import distance_to_liquidation

SERVICES = ("brain", "risk", "execute", "notify")
FEED_SIZE = 100
# One equity point per minute for a day; the newest point follows the live value.
EQUITY_POINTS = 1440
EQUITY_RESOLUTION_S = 60
# Publishers deliver at least once (outboxes, redeliveries): recent ids are remembered so
# that a repeat is not counted twice.
SEEN_MESSAGE_IDS = 5000
# Order statuses worth a line in the feed (NEW and SUBMITTED follow every order at once).
FEED_ORDER_STATUSES = frozenset({"FILLED", "REJECTED", "CANCELED", "UNKNOWN"})
LIQUIDATION_LEVELS = {Level.OK: "ok", Level.WARNING: "warning", Level.CRITICAL: "critical"}


@dataclass
class Position:
    position_id: str
    symbol: str
    side: str
    quantity: float
    entry_price: float
    margin: float
    liquidation_price: float
    leverage: int | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    mark_price: float | None = None
    unrealized_pnl: float | None = None

    def view(self) -> dict[str, Any]:
        distance = entry_distance = None
        level = "unknown"
        if self.mark_price and self.liquidation_price:
            distance = distance_to_liquidation(self.mark_price, self.liquidation_price)
            entry_distance = distance_to_liquidation(self.entry_price, self.liquidation_price)
            level = LIQUIDATION_LEVELS[level_for(distance, entry_distance)]
        return {
            "position_id": self.position_id, "symbol": self.symbol, "side": self.side,
            "quantity": self.quantity, "entry_price": self.entry_price, "margin": self.margin,
            "leverage": self.leverage, "mark_price": self.mark_price,
            "unrealized_pnl": self.unrealized_pnl,
            "roe": self.unrealized_pnl / self.margin
            if self.unrealized_pnl is not None and self.margin else None,
            "stop_loss": self.stop_loss, "take_profit": self.take_profit,
            "liquidation_price": self.liquidation_price,
            "distance_to_liquidation": distance,
            "distance_at_entry": entry_distance,
            "liquidation_level": level,
        }


@dataclass
class Funnel:
    """Today's (UTC) path of the signals: received → decided → verdict → filled."""

    day: date
    received: int = 0
    decisions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        (d.value for d in Decision), 0))
    approved: int = 0
    rejected: int = 0
    filled: int = 0

    def view(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "received": self.received,
                "decisions": dict(self.decisions), "approved": self.approved,
                "rejected": self.rejected, "filled": self.filled}


@dataclass
class ServiceHealth:
    status: str = "unknown"  # ok, degraded, unavailable (503), unreachable, unknown
    checks: dict[str, Any] = field(default_factory=dict)
    checked_at: datetime | None = None


@dataclass(frozen=True)
class Cursor:
    """How far a broadcast went: later updates carry only the newer feed lines and the
    equity points from the last one sent (which may have moved since)."""

    feed_seq: int = 0
    equity_t: float = 0.0


class DashboardState:
    def __init__(self, now: datetime, *, feed_size: int = FEED_SIZE,
                 equity_points: int = EQUITY_POINTS,
                 equity_resolution_s: int = EQUITY_RESOLUTION_S) -> None:
        self.services = {name: ServiceHealth() for name in SERVICES}
        self.trading_state: str | None = None
        self.trading_reason: str | None = None
        self.equity: float | None = None
        self.daily_pnl: float | None = None
        # (start of the minute, equity), oldest first
        self.equity_history: deque[tuple[float, float]] = deque(maxlen=equity_points)
        self.equity_resolution_s = equity_resolution_s
        self.positions: dict[str, Position] = {}
        self.funnel = Funnel(_utc(now).date())
        self.feed: deque[dict[str, Any]] = deque(maxlen=feed_size)
        self._feed_seq = 0
        self._seen: OrderedDict[str, None] = OrderedDict()

    # --- events from the tap -------------------------------------------------------------

    def apply_event(self, envelope: Envelope, payload: MessagePayload) -> bool:
        """Folds one message in; False for a message already folded (a redelivery)."""
        if envelope.message_id in self._seen:
            return False
        self._seen[envelope.message_id] = None
        while len(self._seen) > SEEN_MESSAGE_IDS:
            self._seen.popitem(last=False)
        at = _utc(envelope.produced_at)
        counted = 1 if self._is_today(at) else 0  # yesterday's late events: feed only
        match payload:
            case SignalReceived(signal=signal):
                self.funnel.received += counted
                self._say(at, "signal", "info", signal.symbol,
                          f"signal {signal.action.value} @ {_num(signal.price)} "
                          f"({signal.strategy})")
            case SignalAnalyzed(signal=signal, decision=decision):
                self.funnel.decisions[decision.value] += counted
                score = f", score {payload.scores.phoenix95:.2f}" if payload.scores else ""
                level = {Decision.EXECUTE: "good", Decision.REJECT: "warning"}.get(
                    decision, "info")
                self._say(at, "analysis", level, signal.symbol,
                          f"BRAIN {decision.value} {signal.action.value}{score}")
            case TradeApproved(signal=signal, verdict=verdict):
                self.funnel.approved += counted
                order = verdict.order
                what = (f"{order.side} {_num(order.quantity)} @ {_num(order.price)}"
                        if order and not verdict.close else "close")
                self._say(at, "verdict", "good", signal.symbol, f"RISK approved {what}")
            case TradeRejected(signal=signal, verdict=verdict):
                self.funnel.rejected += counted
                codes = ", ".join(r.code for r in verdict.reasons) or "no reason given"
                self._say(at, "verdict", "warning", signal.symbol, f"RISK rejected: {codes}")
            case OrderUpdated():
                if payload.status == "FILLED" and not payload.reduce_only:  # entries only
                    self.funnel.filled += counted
                if payload.status in FEED_ORDER_STATUSES:
                    price = f" @ {_num(payload.average_price)}" if payload.average_price else ""
                    level = {"FILLED": "good", "CANCELED": "info"}.get(payload.status,
                                                                       "critical")
                    error = f": {payload.error}" if payload.error else ""
                    self._say(at, "order", level, payload.symbol,
                              f"order {payload.status} {payload.side} "
                              f"{_num(payload.filled_quantity or payload.quantity)}"
                              f"{price}{error}")
            case PositionOpened():
                self.positions[payload.position_id] = Position(
                    position_id=payload.position_id, symbol=payload.symbol, side=payload.side,
                    quantity=payload.quantity, entry_price=payload.entry_price,
                    margin=payload.margin, liquidation_price=payload.liquidation_price,
                    leverage=payload.leverage, stop_loss=payload.stop_loss,
                    take_profit=payload.take_profit)
                self._say(at, "position", "good", payload.symbol,
                          f"opened {payload.side} {_num(payload.quantity)} @ "
                          f"{_num(payload.entry_price)}, liq {_num(payload.liquidation_price)}")
            case PositionUpdated():
                known = self.positions.get(payload.position_id)
                self.positions[payload.position_id] = Position(
                    position_id=payload.position_id, symbol=payload.symbol, side=payload.side,
                    quantity=payload.quantity, entry_price=payload.entry_price,
                    margin=payload.margin, liquidation_price=payload.liquidation_price,
                    leverage=known.leverage if known else None, stop_loss=payload.stop_loss,
                    take_profit=known.take_profit if known else None,
                    mark_price=payload.mark_price, unrealized_pnl=payload.unrealized_pnl)
            case PositionClosed():
                if payload.remaining_quantity > 0 and payload.position_id in self.positions:
                    self.positions[payload.position_id].quantity = payload.remaining_quantity
                elif payload.remaining_quantity <= 0:
                    self.positions.pop(payload.position_id, None)
                self._say(at, "position", "good" if payload.realized_pnl >= 0 else "bad",
                          payload.symbol,
                          f"closed ({payload.reason}) @ {_num(payload.exit_price)}, "
                          f"PnL {payload.realized_pnl:+.2f} USDT, ROE {payload.roe:+.1%}")
            case AccountUpdated():
                self.equity, self.daily_pnl = payload.equity, payload.daily_pnl
                self._equity_point(at, payload.equity)
            case EmergencyCloseTriggered():
                self._say(at, "alert", "critical", None,
                          f"emergency close: today's PnL {payload.daily_pnl:+.2f} USDT "
                          f"beyond {payload.threshold:.2f}")
            case RiskAlertRaised():
                if payload.code is RiskAlertCode.TRADING_STATE_CHANGED \
                        and "to" in payload.details:
                    self.trading_state = str(payload.details["to"])
                    self.trading_reason = payload.details.get("reason")
                self._say(at, "alert", payload.severity, payload.symbol,
                          f"{payload.code.value}: {payload.message}")
            case ExecutionAlertRaised():
                self._say(at, "alert", payload.severity, payload.symbol,
                          f"{payload.code}: {payload.message}")
            case ChangeTradingState():
                self._say(at, "control", "info", None,
                          f"{payload.state.value} requested by {payload.requested_by}"
                          + (f": {payload.reason}" if payload.reason else ""))
            case ClosePosition():
                target = "all positions" if payload.all else (
                    payload.symbol or payload.position_id)
                self._say(at, "control", "info", payload.symbol,
                          f"close of {target} requested by {payload.requested_by}")
            case _:
                return True  # a type the dashboard does not show
        return True

    # --- polled snapshots ----------------------------------------------------------------

    def apply_health(self, service: str, status: str, checks: dict[str, Any],
                     at: datetime) -> None:
        self.services[service] = ServiceHealth(status, checks, _utc(at))

    def apply_risk_status(self, status: dict[str, Any], at: datetime) -> None:
        """RISK's `/status`: the trading state, equity and today's PnL."""
        self.trading_state = status.get("trading_state")
        self.trading_reason = status.get("reason")
        if status.get("equity") is not None:
            self.equity = float(status["equity"])
            self._equity_point(_utc(at), self.equity)
        if status.get("daily_pnl") is not None:
            self.daily_pnl = float(status["daily_pnl"])

    def apply_positions(self, rows: list[dict[str, Any]]) -> None:
        """EXECUTE's open positions (`/positions`), which replace what events built."""
        self.positions = {
            row["position_id"]: Position(
                position_id=row["position_id"], symbol=row["symbol"], side=row["side"],
                quantity=row["quantity"], entry_price=row["entry_price"],
                margin=row["margin"], liquidation_price=row["liquidation_price"],
                leverage=row.get("leverage"), stop_loss=row.get("stop_loss"),
                take_profit=row.get("take_profit"), mark_price=row.get("mark_price"),
                unrealized_pnl=row.get("unrealized_pnl"))
            for row in rows
        }

    # --- views ---------------------------------------------------------------------------

    def view(self, at: datetime, since: Cursor | None = None) -> tuple[dict[str, Any], Cursor]:
        """Everything (`since` None) or an update after `since`; and the cursor after it."""
        self._is_today(_utc(at))  # the funnel starts again at 00:00 UTC, events or not
        feed = [item for item in self.feed if since is None or item["seq"] > since.feed_seq]
        equity = [list(point) for point in self.equity_history
                  if since is None or point[0] >= since.equity_t]
        body = {
            "at": _utc(at).isoformat(),
            "services": {name: {"status": health.status, "checks": health.checks,
                                "checked_at": health.checked_at.isoformat()
                                if health.checked_at else None}
                         for name, health in self.services.items()},
            "trading": {"state": self.trading_state, "reason": self.trading_reason},
            "equity": self.equity,
            "daily_pnl": self.daily_pnl,
            "equity_history": equity,
            "positions": [p.view() for p in sorted(self.positions.values(),
                                                   key=lambda p: (p.symbol, p.position_id))],
            "funnel": self.funnel.view(),
            "feed": feed,
        }
        cursor = Cursor(self._feed_seq,
                        self.equity_history[-1][0] if self.equity_history else 0.0)
        return body, cursor

    # --- helpers -------------------------------------------------------------------------

    def _is_today(self, at: datetime) -> bool:
        """Whether `at` counts in today's funnel; a new UTC day starts a new funnel."""
        if at.date() > self.funnel.day:
            self.funnel = Funnel(at.date())
        return at.date() == self.funnel.day

    def _equity_point(self, at: datetime, equity: float) -> None:
        minute = at.timestamp() // self.equity_resolution_s * self.equity_resolution_s
        if self.equity_history and self.equity_history[-1][0] == minute:
            self.equity_history[-1] = (minute, equity)
        elif not self.equity_history or self.equity_history[-1][0] < minute:
            self.equity_history.append((minute, equity))

    def _say(self, at: datetime, kind: str, level: str, symbol: str | None, text: str) -> None:
        self._feed_seq += 1
        self.feed.append({"seq": self._feed_seq, "at": at.isoformat(), "kind": kind,
                          "level": level, "symbol": symbol, "text": text})


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:.8g}"
