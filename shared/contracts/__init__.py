"""Message contracts: the envelope and one payload model per message type.

Producers and consumers import the same classes, so a message cannot drift between them.
"""

from shared.contracts.envelope import (
    Envelope,
    InvalidMessageError,
    MessagePayload,
    parse_envelope,
)
from shared.contracts.reasons import Reason, ReasonCode
from shared.contracts.risk import (
    ChangeTradingState,
    OrderPlan,
    RiskAlertCode,
    RiskAlertRaised,
    TradeApproved,
    TradeRejected,
    TradingState,
    Verdict,
)
from shared.contracts.signals import (
    Action,
    Decision,
    Scores,
    Signal,
    SignalAnalyzed,
    SignalReceived,
    Sizing,
)
from shared.contracts.trading import (
    AccountUpdated,
    ClosePosition,
    EmergencyCloseTriggered,
    ExecutionAlertRaised,
    OrderUpdated,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
)

__all__ = [
    "AccountUpdated",
    "Action",
    "ChangeTradingState",
    "ClosePosition",
    "Decision",
    "EmergencyCloseTriggered",
    "Envelope",
    "ExecutionAlertRaised",
    "InvalidMessageError",
    "MessagePayload",
    "OrderPlan",
    "OrderUpdated",
    "PositionClosed",
    "PositionOpened",
    "PositionUpdated",
    "Reason",
    "ReasonCode",
    "RiskAlertCode",
    "RiskAlertRaised",
    "Scores",
    "Signal",
    "SignalAnalyzed",
    "SignalReceived",
    "Sizing",
    "TradeApproved",
    "TradeRejected",
    "TradingState",
    "Verdict",
    "parse_envelope",
]
