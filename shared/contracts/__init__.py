"""Message contracts: the envelope and one payload model per message type.

Producers and consumers import the same classes, so a message cannot drift between them.
"""

from shared.contracts.envelope import (
    Envelope,
    InvalidMessageError,
    MessagePayload,
    parse_envelope,
)
from shared.contracts.signals import (
    Action,
    Decision,
    Reason,
    ReasonCode,
    Scores,
    Signal,
    SignalAnalyzed,
    SignalReceived,
    Sizing,
)

__all__ = [
    "Action",
    "Decision",
    "Envelope",
    "InvalidMessageError",
    "MessagePayload",
    "Reason",
    "ReasonCode",
    "Scores",
    "Signal",
    "SignalAnalyzed",
    "SignalReceived",
    "Sizing",
    "parse_envelope",
]
