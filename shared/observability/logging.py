"""JSON log lines with the service name and the correlation id; secrets masked."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import Any

import structlog

MASK = "***"


class _SecretMasker:
    """Replaces every known secret value in the rendered line, whatever field carried it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Also as JSON escapes them (quotes, backslashes, non-ASCII), since the line is JSON.
        forms = {
            form
            for secret in secrets if secret
            for form in (secret, json.dumps(secret)[1:-1],
                         json.dumps(secret, ensure_ascii=False)[1:-1])
        }
        # Longest first, so a URL containing a password is masked whole.
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, logger: Any, method: str, line: str) -> str:
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, MASK)
        return line


def configure_logging(
    service: str, *, level: str = "INFO", fmt: str = "json", secrets: Iterable[str] = ()
) -> None:
    """Route structlog and the standard library (uvicorn, aio-pika, alembic) to one format."""
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        lambda _logger, _method, event: {"service": service, **event},
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            renderer,
            _SecretMasker(secrets),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # ccxt's debug lines carry whole requests (the X-MBX-APIKEY header among them).
    for noisy in ("aiormq", "aio_pika", "ccxt"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.INFO))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs each request's URL at INFO, and Telegram's URLs carry the bot token: masked
    # anyway, but better never written.
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))

    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


bind_correlation_id = structlog.contextvars.bound_contextvars
