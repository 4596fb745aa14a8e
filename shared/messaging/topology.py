"""The RabbitMQ topology, defined once (messaging.md).

`infrastructure/rabbitmq/definitions.json` is generated from it
(`python -m shared.messaging.topology > infrastructure/rabbitmq/definitions.json`), and every
service declares it at start-up so that a bare broker works too. A test keeps the two equal.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

DEAD_LETTER_EXCHANGE = "phoenix95.dlx"
DELIVERY_LIMIT = 5


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str  # "topic" | "direct"


@dataclass(frozen=True)
class Queue:
    name: str
    bindings: tuple[tuple[str, str], ...]  # (exchange, routing key)
    single_active_consumer: bool = False
    dead_letter: bool = True  # a work queue: delivery limit, dead-lettered to its DLQ
    arguments: dict[str, Any] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        arguments: dict[str, Any] = {"x-queue-type": "quorum"}
        if self.dead_letter:
            arguments |= {
                "x-delivery-limit": DELIVERY_LIMIT,
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-routing-key": self.name,
            }
        if self.single_active_consumer:
            arguments["x-single-active-consumer"] = True
        object.__setattr__(self, "arguments", arguments)


TRADING_SIGNALS = Exchange("trading.signals", "topic")
ANALYSIS = Exchange("phoenix95.analysis", "direct")
RISK_MANAGEMENT = Exchange("risk.management", "direct")
TRADING_EXECUTION = Exchange("trading.execution", "topic")
CONTROL = Exchange("phoenix95.control", "topic")
DLX = Exchange(DEAD_LETTER_EXCHANGE, "topic")

EXCHANGES: tuple[Exchange, ...] = (
    TRADING_SIGNALS, ANALYSIS, RISK_MANAGEMENT, TRADING_EXECUTION, CONTROL, DLX,
)

# Routing keys of BRAIN's analyses (the others belong to the services that publish them).
SIGNAL_PROCESS = "signal.process"
SIGNAL_HOLD = "signal.hold"

_PIPELINE_QUEUES: tuple[Queue, ...] = (
    Queue("signal_processing", ((ANALYSIS.name, SIGNAL_PROCESS),), single_active_consumer=True),
    Queue("trade_execution", ((RISK_MANAGEMENT.name, "trade.execute"),)),
    Queue("risk_alerts", ((RISK_MANAGEMENT.name, "risk.alert"),)),
    Queue(
        "risk_positions",
        tuple((TRADING_EXECUTION.name, key) for key in ("position.#", "order.#", "account.#")),
    ),
    Queue(
        "notify_events",
        (
            (TRADING_SIGNALS.name, "#"),
            (ANALYSIS.name, SIGNAL_PROCESS),
            (ANALYSIS.name, SIGNAL_HOLD),
            (RISK_MANAGEMENT.name, "trade.execute"),
            (RISK_MANAGEMENT.name, "trade.rejected"),
            (TRADING_EXECUTION.name, "#"),
        ),
    ),
    Queue("risk_control", ((CONTROL.name, "control.trading_state"),)),
    Queue("execute_control", ((CONTROL.name, "control.close_position"),)),
)
# NOTIFY's copy of every dead letter, to tell the operator; each DLQ keeps its own for
# inspection and replay. Not bound to its own key: a failure here cannot loop.
NOTIFY_DEAD_LETTERS = Queue(
    "notify_dead_letters", tuple((DLX.name, q.name) for q in _PIPELINE_QUEUES))
WORK_QUEUES: tuple[Queue, ...] = (*_PIPELINE_QUEUES, NOTIFY_DEAD_LETTERS)

DEAD_LETTER_QUEUES: tuple[Queue, ...] = tuple(
    Queue(f"{q.name}.dlq", ((DLX.name, q.name),), dead_letter=False) for q in WORK_QUEUES
)

QUEUES: tuple[Queue, ...] = WORK_QUEUES + DEAD_LETTER_QUEUES


def dead_letter_queue(queue_name: str) -> str:
    return f"{queue_name}.dlq"


def definitions(vhost: str = "/trading") -> dict[str, Any]:
    """The topology in the broker's definitions format (loaded at boot in docker compose)."""
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": [
            {
                "name": e.name, "vhost": vhost, "type": e.type, "durable": True,
                "auto_delete": False, "internal": False, "arguments": {},
            }
            for e in EXCHANGES
        ],
        "queues": [
            {
                "name": q.name, "vhost": vhost, "durable": True, "auto_delete": False,
                "arguments": q.arguments,
            }
            for q in QUEUES
        ],
        "bindings": [
            {
                "source": exchange, "vhost": vhost, "destination": q.name,
                "destination_type": "queue", "routing_key": key, "arguments": {},
            }
            for q in QUEUES
            for exchange, key in q.bindings
        ],
    }


def render_definitions(vhost: str = "/trading") -> str:
    return json.dumps(definitions(vhost), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_definitions(*sys.argv[1:2]))
