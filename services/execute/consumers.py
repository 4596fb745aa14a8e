"""EXECUTE's consumers: RISK's approvals, and close commands (Telegram /close)."""

from __future__ import annotations

from services.execute.engine import ExecutionEngine
from shared.contracts import (
    ClosePosition,
    Envelope,
    InvalidMessageError,
    MessagePayload,
    TradeApproved,
)
from shared.messaging import Broker, Consumer


async def close_as_commanded(engine: ExecutionEngine, command: ClosePosition) -> list:
    """Shared by `control.close_position` and `POST /close`."""
    closed = []
    for position in await engine.open_positions():
        if command.all or position.position_id == command.position_id or (
                command.symbol is not None and position.symbol == command.symbol):
            result = await engine.close_position(position.position_id, "manual",
                                                  fraction=command.fraction)
            if result is not None:
                closed.append(result)
    return closed


def consumers(broker: Broker, engine: ExecutionEngine, prefetch: int) -> list[Consumer]:
    async def approvals(envelope: Envelope, payload: MessagePayload) -> None:
        if not isinstance(payload, TradeApproved):
            raise InvalidMessageError(f"{envelope.type} does not belong on trade_execution")
        await engine.on_approved(payload)

    async def control(envelope: Envelope, payload: MessagePayload) -> None:
        if not isinstance(payload, ClosePosition):
            raise InvalidMessageError(f"{envelope.type} does not belong on execute_control")
        await close_as_commanded(engine, payload)

    return [
        Consumer(broker, "trade_execution", approvals, prefetch=prefetch),
        Consumer(broker, "execute_control", control, prefetch=prefetch),
    ]
