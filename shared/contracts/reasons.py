"""Machine-readable reasons: a code plus the numbers that decided it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ReasonCode(StrEnum):
    # BRAIN (brain.md, "Decision")
    CONFIDENCE_BELOW_MINIMUM = "CONFIDENCE_BELOW_MINIMUM"
    PHOENIX_SCORE_BELOW_THRESHOLD = "PHOENIX_SCORE_BELOW_THRESHOLD"
    BELOW_EXECUTION_THRESHOLD = "BELOW_EXECUTION_THRESHOLD"
    NO_EDGE = "NO_EDGE"


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ReasonCode
    value: float | None = None
    limit: float | None = None
    message: str = ""
