"""Fuzzing of the four services' OpenAPI specs with schemathesis, over real HTTP against the
services running in-process on the test infrastructure: every operation, with generated valid
and invalid data, with the credentials it needs and without them. No answer may be a 5xx, and
each must be one the spec documents, of the documented content type and schema.

The generation is derandomised (the same cases on every run) and bounded to EXAMPLES per
operation, mode and credential. NOTIFY's `GET /events/stream` never ends, so it is left out of
the fuzzing and checked on its own."""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.brain.intake import Alert
from services.notify.app import create_app as create_notify
from services.notify.settings import NotifySettings
from tests.fakes.telegram import TOKEN
from tests.integration.conftest import (
    API_KEY,
    WEBHOOK_SECRET,
    brain_settings,
    infrastructure,
    running_brain,
)
from tests.integration.execute_fixtures import (
    Execute,
    execute_settings,
    running_execute,
    until,
)
from tests.integration.notify_fixtures import CHAT
from tests.integration.risk_fixtures import risk_settings, running_risk
from tests.integration.serving import served

EXAMPLES = 60
PASSWORD = "fuzz-dashboard-pass-31c7"
BASIC = "Basic " + base64.b64encode(f"anyone:{PASSWORD}".encode()).decode()
# Both credentials at once: the API key for the API, HTTP Basic for NOTIFY's dashboard.
CREDENTIALS = {"X-API-Key": API_KEY, "Authorization": BASIC}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
STREAM = ("GET", "/events/stream")
KNOWN_SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def webhook_documented(spec: dict[str, Any]) -> dict[str, Any]:
    """BRAIN's spec with the webhook's body described. The route reads the raw body itself (it
    may arrive as text/plain), so FastAPI documents none; without one the fuzzer would only
    ever send an empty body. The secret is the right one, so that valid alerts get through."""
    spec = copy.deepcopy(spec)
    body = Alert.model_json_schema(ref_template="#/components/schemas/{model}")
    spec.setdefault("components", {}).setdefault("schemas", {}).update(body.pop("$defs", {}))
    body["properties"]["secret"] = {"type": "string", "enum": [WEBHOOK_SECRET]}
    body["properties"]["symbol"] = {"type": "string", "pattern": "^[A-Z0-9]{2,30}$"}
    body["required"] = ["secret", *body["required"]]
    spec["paths"]["/webhook"]["post"]["requestBody"] = {
        "required": True, "content": {"application/json": {"schema": body}}}
    return spec


def with_known_symbols(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with every `symbol` also offered as one the system trades and has prices for:
    random symbols alone are all refused early (unknown, or no price yet), and the fuzzer
    would never reach sizing, the exchange or a close of an open position."""
    spec = copy.deepcopy(spec)

    def either(schema: dict[str, Any]) -> dict[str, Any]:
        # Disjoint branches: overlapping ones get merged and the known symbols lost.
        return {"oneOf": [{"type": "string", "enum": KNOWN_SYMBOLS},
                          {"allOf": [schema], "not": {"enum": KNOWN_SYMBOLS}}]}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "symbol" and isinstance(value, dict) and "schema" not in value:
                    node[key] = either(value)
                elif key == "schema" and node.get("name") == "symbol":
                    node[key] = either(value)
                else:
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(spec)
    return spec


def unparseable(response: schemathesis.Response) -> bool:
    """Whether this is FastAPI's refusal of a body that is not JSON at all."""
    detail = response.json().get("detail")
    if response.status_code == 400:
        return detail == "There was an error parsing the body"
    return isinstance(detail, list) and all(e.get("type") == "json_invalid" for e in detail)


def fuzz(spec: dict[str, Any], base_url: str, *, credentials: bool,
         exclude: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """Runs every operation of `spec` against `base_url`; the failures, one line each."""
    schema = schemathesis.openapi.from_dict(spec)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in exclude:
            continue
        raw = operation.definition.raw
        modes = [GenerationMode.POSITIVE]
        if raw.get("parameters") or raw.get("requestBody"):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            try:
                fuzz_operation(operation, mode, base_url, credentials=credentials)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                failures.append(f"{operation.label} [{mode.value}, "
                                f"{'with' if credentials else 'without'} credentials]: {exc}")
    return failures


def fuzz_operation(operation: schemathesis.APIOperation, mode: GenerationMode, base_url: str,
                   *, credentials: bool) -> None:
    secured = bool(operation.definition.raw.get("security"))
    strategy = operation.as_strategy(mode, headers=dict(CREDENTIALS) if credentials else None)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, timeout=30)
        if secured and not credentials:
            # Refused, whatever the input; only a body that is not JSON at all is turned away
            # sooner, by FastAPI's parsing (which comes before any dependency).
            if response.status_code in (400, 422) and unparseable(response):
                return
            assert response.status_code == 401, (
                f"{case.operation.label} without credentials answered "
                f"{response.status_code}: {response.text[:300]}")
            return
        if response.status_code == 400 and unparseable(response):
            # FastAPI's own answer to a body that is not JSON at all, on every route with a
            # body: a clear 4xx, though no route documents it.
            case.validate_response(response, checks=[not_a_server_error,
                                                     content_type_conformance])
            return
        case.validate_response(response, checks=CHECKS)

    run()


async def fuzz_app(app: FastAPI, spec: dict[str, Any] | None = None,
                   exclude: tuple[tuple[str, str], ...] = ()) -> None:
    spec = spec or app.openapi()
    async with served(app) as url:
        failures = []
        for credentials in (True, False):
            failures += await asyncio.to_thread(fuzz, spec, url, credentials=credentials,
                                                exclude=exclude)
    assert not failures, "\n\n".join(failures)


@pytest.fixture
async def trading(vhost, redis_prefix, sqlite_url, amqp):
    """BRAIN, RISK and EXECUTE (paper) together, as the `system` fixture has them, but with
    BRAIN's rate limit out of the way: past 120 requests a minute every webhook would be a
    429, and the fuzzer would never reach the validation behind it."""
    async with AsyncExitStack() as stack:
        brain = await stack.enter_async_context(running_brain(brain_settings(
            vhost, redis_prefix, sqlite_url, rate_limit_per_minute=1_000_000)))
        risk = await stack.enter_async_context(
            running_risk(risk_settings(vhost, redis_prefix, sqlite_url)))
        execute = await stack.enter_async_context(
            running_execute(execute_settings(vhost, redis_prefix, sqlite_url)))
        yield brain, risk, execute


@asynccontextmanager
async def running_notify_app(vhost: str, redis_prefix: str, sqlite_url: str,
                             telegram_url: str) -> AsyncIterator[FastAPI]:
    values = infrastructure(vhost, redis_prefix, sqlite_url) | {
        "telegram_bot_token": TOKEN, "telegram_chat_ids": str(CHAT),
        "telegram_api_base_url": telegram_url, "telegram_min_interval_s": 0.0,
        "dashboard_password": PASSWORD}
    app = create_notify(NotifySettings(_env_file=None, **values))
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.ready, 30)
        yield app


async def test_brain_survives_fuzzing(trading):
    brain, _, execute = trading
    await prices(execute)
    await fuzz_app(brain.app, with_known_symbols(webhook_documented(brain.app.openapi())))


async def test_risk_survives_fuzzing(trading):
    _, risk, execute = trading
    await prices(execute)
    await fuzz_app(risk.app, with_known_symbols(risk.app.openapi()))


async def test_execute_survives_fuzzing(trading):
    _, _, execute = trading
    await prices(execute)
    await fuzz_app(execute.app, with_known_symbols(execute.app.openapi()))


async def prices(execute: Execute) -> None:
    """Market prices for the known symbols, so that orders can be sized and filled."""
    for symbol, price in zip(KNOWN_SYMBOLS, (43123.5, 2500.0), strict=True):
        await execute.tick(symbol, price)
    await until(lambda: all_priced(execute), what="prices of the known symbols")


async def all_priced(execute: Execute) -> bool:
    books = execute.app.state.monitor.books
    return all(books.get(s) and books[s].last_price for s in KNOWN_SYMBOLS)


async def test_notify_survives_fuzzing(vhost, redis_prefix, sqlite_url, amqp, telegram):
    async with running_notify_app(vhost, redis_prefix, sqlite_url, telegram.url) as app:
        await fuzz_app(app, exclude=(STREAM,))


async def test_notify_event_stream_needs_the_password(vhost, redis_prefix, sqlite_url, amqp,
                                                      telegram):
    """The stream left out of the fuzzing: 401 without the password, else an SSE stream."""
    async with running_notify_app(vhost, redis_prefix, sqlite_url, telegram.url) as app, \
            served(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        refused = await client.get("/events/stream", headers={"X-API-Key": API_KEY})
        assert refused.status_code == 401
        async with client.stream("GET", "/events/stream",
                                 headers={"Authorization": BASIC}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            first = await anext(response.aiter_lines())
            assert first.startswith(("event:", "data:", ":"))
        app.state.end_streams()
