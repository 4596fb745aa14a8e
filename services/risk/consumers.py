"""RISK's consumers: analyses to decide, EXECUTE's events to learn from, control commands."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.risk.engine import RiskEngine
from shared.contracts import (
    AccountUpdated,
    ChangeTradingState,
    EmergencyCloseTriggered,
    Envelope,
    InvalidMessageError,
    MessagePayload,
    OrderUpdated,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    SignalAnalyzed,
)
from shared.messaging import Broker, Consumer


def consumers(broker: Broker, engine: RiskEngine, prefetch: int,
              on_positions_changed: Callable[[], Awaitable[None]]) -> list[Consumer]:
    async def analyses(envelope: Envelope, payload: MessagePayload) -> None:
        if not isinstance(payload, SignalAnalyzed):
            raise InvalidMessageError(f"{envelope.type} does not belong on signal_processing")
        await engine.decide(payload)

    async def execution_events(envelope: Envelope, payload: MessagePayload) -> None:
        match payload:
            case PositionOpened():
                await engine.on_position_opened(payload)
                await on_positions_changed()
            case PositionClosed():
                await engine.on_position_closed(payload)
                await on_positions_changed()
            case PositionUpdated():  # sent on every price move: mostly nothing changed
                if await engine.on_position_updated(payload):
                    await on_positions_changed()
            case OrderUpdated():
                await engine.on_order_updated(payload)
            case AccountUpdated():
                await engine.on_account_updated(payload)
            case EmergencyCloseTriggered():
                await engine.on_emergency()
            case _:
                pass  # EXECUTE's alerts: nothing RISK keeps

    async def control(envelope: Envelope, payload: MessagePayload) -> None:
        if not isinstance(payload, ChangeTradingState):
            raise InvalidMessageError(f"{envelope.type} does not belong on risk_control")
        await engine.change_state(payload.state, payload.reason, payload.requested_by,
                                  requested_at=envelope.produced_at)

    return [
        Consumer(broker, "signal_processing", analyses, prefetch=prefetch),
        Consumer(broker, "risk_positions", execution_events, prefetch=prefetch),
        Consumer(broker, "risk_control", control, prefetch=prefetch),
    ]
