"""Serving one service's app with uvicorn, logging configured first."""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from shared.config import Settings
from shared.observability.logging import configure_logging


class _Server(uvicorn.Server):
    """uvicorn, ending the app's event streams (NOTIFY's dashboard: `app.state.end_streams`)
    as soon as shutdown begins; an open stream would otherwise hold the graceful wait until
    its timeout."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        end_streams = getattr(self.config.app.state, "end_streams", None)
        if end_streams is not None:
            end_streams()
        await super().shutdown(sockets)


def serve(app: FastAPI, settings: Settings, port: int) -> None:
    configure_logging(
        settings.service_name, level=settings.log_level, fmt=settings.log_format,
        secrets=settings.secret_values(),
    )
    config = uvicorn.Config(app, host=settings.bind_host, port=port, log_config=None,
                            access_log=False, timeout_graceful_shutdown=10)
    _Server(config).run()
