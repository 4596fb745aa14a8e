"""Serving one service's app with uvicorn, logging configured first."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from shared.config import Settings
from shared.observability.logging import configure_logging


def serve(app: FastAPI, settings: Settings, port: int) -> None:
    configure_logging(
        settings.service_name, level=settings.log_level, fmt=settings.log_format,
        secrets=settings.secret_values(),
    )
    uvicorn.run(app, host=settings.bind_host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)
