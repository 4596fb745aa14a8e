"""The envelope every message travels in (messaging.md, "Envelope")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class InvalidMessageError(ValueError):
    """A message no retry can fix: bad JSON, bad schema, unknown type or version."""


class MessagePayload(BaseModel):
    """Base of every payload model; each subclass names its message type and version."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    message_type: ClassVar[str]
    version: ClassVar[int] = 1


_PAYLOADS: dict[str, type[MessagePayload]] = {}


def register(model: type[MessagePayload]) -> type[MessagePayload]:
    """Class decorator: makes a payload model known to `parse_envelope`."""
    if model.message_type in _PAYLOADS:
        raise ValueError(f"message type {model.message_type!r} is defined twice")
    _PAYLOADS[model.message_type] = model
    return model


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    type: str
    version: int = 1
    message_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    correlation_id: str
    causation_id: str | None = None
    produced_at: datetime = Field(default_factory=_now)
    producer: str
    payload: dict[str, Any]

    @classmethod
    def wrap(
        cls,
        payload: MessagePayload,
        *,
        producer: str,
        correlation_id: str,
        causation_id: str | None = None,
        message_id: str | None = None,
    ) -> Envelope:
        return cls(
            type=payload.message_type,
            version=payload.version,
            message_id=message_id or str(uuid.uuid4()),
            correlation_id=correlation_id,
            causation_id=causation_id,
            producer=producer,
            payload=payload.model_dump(mode="json"),
        )

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    def open(self) -> MessagePayload:
        """The payload as its typed model; InvalidMessageError if it is not one we understand."""
        model = _PAYLOADS.get(self.type)
        if model is None:
            raise InvalidMessageError(f"unknown message type {self.type!r}")
        if self.version > model.version:
            raise InvalidMessageError(
                f"{self.type} version {self.version} is newer than the {model.version} understood"
            )
        try:
            return model.model_validate(self.payload)
        except ValidationError as exc:
            raise InvalidMessageError(f"bad {self.type} payload: {exc}") from exc


def parse_envelope(body: bytes) -> Envelope:
    try:
        return Envelope.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidMessageError(f"bad envelope: {exc.errors(include_url=False)}") from exc
