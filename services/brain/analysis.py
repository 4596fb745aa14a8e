"""From a validated alert and its context to BRAIN's analysis: pure, no I/O."""

from __future__ import annotations

from datetime import datetime

from services.brain import scoring, sizing
from services.brain.intake import Alert
from services.brain.settings import BrainSettings
from shared.contracts import Action, Signal, SignalAnalyzed
from shared.instruments import PAPER_PRECISION, protective_prices


def to_signal(alert: Alert, signal_id: str, received_at: datetime) -> Signal:
    return Signal(
        signal_id=signal_id,
        received_at=received_at,
        **alert.model_dump(),
    )


def analyze(
    signal: Signal,
    open_positions: int,
    performance: scoring.Performance,
    settings: BrainSettings,
) -> SignalAnalyzed:
    thresholds = settings.thresholds()
    scores = sized = None
    kelly = None
    stop_loss = take_profit = None
    if signal.action is not Action.CLOSE:
        indicators = scoring.Indicators(
            confidence=signal.confidence, price=signal.price,
            rsi=signal.rsi, macd=signal.macd, volume=signal.volume,
        )
        scores = scoring.score(indicators, open_positions, performance, thresholds)
        sized = sizing.size(
            performance, thresholds, scores.final_confidence,
            kelly_multiplier=settings.kelly_fraction,
            max_position_size=settings.max_position_size,
            take_profit_pct=settings.take_profit_pct,
            stop_loss_pct=settings.stop_loss_pct,
        )
        kelly = sized.kelly
        precision = PAPER_PRECISION.get(signal.symbol)
        stop_loss, take_profit = protective_prices(
            signal.action.value, signal.price, settings.stop_loss_pct, settings.take_profit_pct,
            precision.price_tick if precision else None,
        )
    decision, reasons = scoring.decide(
        signal.action, signal.confidence, scores, kelly, thresholds
    )
    return SignalAnalyzed(
        signal=signal,
        decision=decision,
        reasons=reasons,
        scores=scores,
        sizing=sized,
        leverage=settings.leverage,
        entry_price=signal.price,
        stop_loss=stop_loss,
        take_profit=take_profit,
    )
