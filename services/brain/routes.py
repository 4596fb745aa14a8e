"""BRAIN's HTTP surface: the TradingView webhook, /analyze, /signals, /health."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from ipaddress import ip_address
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from services.brain.intake import Alert, normalise_symbol
from services.brain.metrics import WEBHOOK_REQUESTS
from services.brain.pipeline import Accepted, SignalPipeline
from services.brain.ratelimit import RateLimiter
from services.brain.settings import BrainSettings
from shared.contracts import Reason, Scores, SignalAnalyzed, Sizing
from shared.http import constant_time_in
from shared.observability.logging import get_logger

log = get_logger(__name__)


class AnalysisView(BaseModel):
    """The analysis as the API shows it (brain.md, "/analyze response")."""

    signal_id: str | None
    symbol: str
    side: Literal["long", "short", "close"]
    decision: str
    reasons: list[Reason]
    scores: Scores | None
    sizing: Sizing | None
    leverage: int
    entry_price: float
    stop_loss: float | None
    take_profit: float | None

    @classmethod
    def of(cls, analysis: SignalAnalyzed) -> AnalysisView:
        return cls(
            signal_id=analysis.signal.signal_id or None,
            symbol=analysis.signal.symbol,
            side=analysis.signal.action.value,
            decision=analysis.decision.value,
            reasons=analysis.reasons,
            scores=analysis.scores,
            sizing=analysis.sizing,
            leverage=analysis.leverage,
            entry_price=analysis.entry_price,
            stop_loss=analysis.stop_loss,
            take_profit=analysis.take_profit,
        )


class SignalView(BaseModel):
    signal_id: str
    symbol: str
    action: str
    price: float
    strategy: str
    timeframe: str | None
    received_at: datetime
    decision: str
    phoenix95_score: float | None
    published: bool
    analysis: AnalysisView


class WebhookAnswer(BaseModel):
    status: Literal["accepted", "duplicate"]
    signal_id: str
    decision: str | None = None


def _reject(code: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    WEBHOOK_REQUESTS.labels(str(code)).inc()
    return JSONResponse({"detail": detail}, status_code=code, headers=headers)


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def client_ip(request: Request, settings: BrainSettings) -> str:
    """The caller's address; `X-Forwarded-For` counts only when a trusted proxy set it."""
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    if not forwarded or not _in(peer, settings.trusted_proxies):
        return peer
    # Walk from the nearest hop back; the first address no trusted proxy owns is the client.
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not _in(hop, settings.trusted_proxies):
            return hop
    return peer


def _in(address: str, networks: list[Any]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def build_router(settings: BrainSettings, require_api_key: Any) -> APIRouter:
    router = APIRouter()
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None

    @router.post(
        "/webhook",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=WebhookAnswer,
        responses={200: {"model": WebhookAnswer, "description": "duplicate alert"},
                   401: {}, 403: {}, 413: {}, 422: {}, 429: {}, 503: {}},
        summary="TradingView alert intake",
    )
    async def webhook(
        request: Request, token: str | None = Query(None, description="the webhook secret")
    ) -> JSONResponse:
        pipeline: SignalPipeline = request.app.state.pipeline
        limiter: RateLimiter = request.app.state.rate_limiter
        source = client_ip(request, settings)
        if settings.webhook_allowed_ips and not _in(source, settings.webhook_allowed_ips):
            log.warning("webhook from a source outside the allowlist", source_ip=source)
            return _reject(403, "source address not allowed")
        if not await limiter.allow(source):
            return _reject(429, "too many requests", {"Retry-After": "60"})
        body = await _read_body(request, settings.webhook_max_body_bytes)
        if body is None:
            return _reject(413, f"body over {settings.webhook_max_body_bytes} bytes")

        # The secret may come in the query string, so check it before complaining about JSON.
        if token is not None and not _secret_ok(token):
            return _reject(401, "bad webhook secret")
        try:
            payload = json.loads(body, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:
            return _reject(422, [{"loc": ["body"], "msg": f"invalid JSON: {exc}",
                                  "type": "json_invalid"}])
        if not isinstance(payload, dict):
            return _reject(422, [{"loc": ["body"], "msg": "the alert must be a JSON object",
                                  "type": "object_type"}])
        if token is None and not _secret_ok(payload.get("secret")):
            return _reject(401, "missing or bad webhook secret")
        try:
            alert = Alert.model_validate(payload)
        except ValidationError as exc:
            return _reject(422, exc.errors(include_url=False, include_context=False,
                                           include_input=False))

        if not request.app.state.broker.connected:
            return _reject(503, "message broker unavailable, retry", {"Retry-After": "5"})
        raw = {k: v for k, v in payload.items() if k != "secret"}
        # TradingView gives up after 3 s; past the deadline a TimeoutError answers 503.
        async with asyncio.timeout(settings.webhook_deadline_s):
            outcome = await pipeline.accept(alert, raw, source)
        if isinstance(outcome, Accepted):
            WEBHOOK_REQUESTS.labels("202").inc()
            answer = WebhookAnswer(status="accepted", signal_id=outcome.signal_id,
                                   decision=outcome.decision.value)
            return JSONResponse(answer.model_dump(), status_code=202)
        WEBHOOK_REQUESTS.labels("200").inc()
        answer = WebhookAnswer(status="duplicate", signal_id=outcome.signal_id)
        return JSONResponse(answer.model_dump(exclude_none=True), status_code=200)

    def _secret_ok(candidate: object) -> bool:
        if secret is None or not isinstance(candidate, str):
            return False
        return constant_time_in(candidate, [secret])

    @router.post("/analyze", response_model=AnalysisView, dependencies=[Depends(require_api_key)],
                 summary="Score a signal without side effects")
    async def analyze(alert: Alert, request: Request) -> AnalysisView:
        pipeline: SignalPipeline = request.app.state.pipeline
        return AnalysisView.of(await pipeline.analyze(alert))

    @router.get("/signals", response_model=list[SignalView],
                dependencies=[Depends(require_api_key)], summary="Recent signals, newest first")
    async def signals(
        request: Request,
        symbol: str | None = Query(None, max_length=40),
        limit: int = Query(50, ge=1, le=500),
    ) -> list[SignalView]:
        if symbol is not None:
            try:
                symbol = normalise_symbol(symbol)
            except ValueError:
                return JSONResponse(  # type: ignore[return-value]
                    {"detail": [{"loc": ["query", "symbol"], "msg": "not a symbol",
                                 "type": "value_error"}]}, status_code=422)
        pipeline: SignalPipeline = request.app.state.pipeline
        return [
            SignalView(
                signal_id=row.signal_id, symbol=row.symbol, action=row.action, price=row.price,
                strategy=row.strategy, timeframe=row.timeframe, received_at=row.received_at,
                decision=row.decision, phoenix95_score=row.phoenix95_score,
                published=row.published_at is not None,
                analysis=AnalysisView.of(SignalAnalyzed.model_validate(row.analysis)),
            )
            for row in await pipeline.recent(symbol, limit)
        ]

    return router
