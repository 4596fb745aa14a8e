"""Prometheus metrics every service exports, and the `/metrics` and HTTP middleware helpers."""

from __future__ import annotations

import time

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "phoenix95_http_requests_total",
    "HTTP requests by endpoint and status",
    ["service", "method", "path", "status"],
)
HTTP_LATENCY = Histogram(
    "phoenix95_http_request_duration_seconds",
    "HTTP request latency by endpoint",
    ["service", "method", "path"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MESSAGES = Counter(
    "phoenix95_messages_total",
    "Consumed messages by queue and outcome (acked, retried, dead_lettered)",
    ["queue", "outcome"],
)
DEAD_LETTERS = Counter(
    "phoenix95_dead_letters_total", "Messages sent to a dead-letter queue", ["queue"]
)
PUBLISHED = Counter(
    "phoenix95_messages_published_total",
    "Confirmed publishes by exchange and outcome",
    ["exchange", "outcome"],
)


class _HttpMetrics:
    """Pure ASGI middleware (no per-request task), labelled by route template, not raw path."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            HTTP_REQUESTS.labels(self.service, method, path, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, path).observe(time.perf_counter() - started)


def instrument(app: FastAPI, service: str) -> None:
    """Adds `/metrics` and per-endpoint request counts and latency."""
    app.add_middleware(_HttpMetrics, service=service)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
