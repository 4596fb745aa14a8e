"""Security checks (issue 6) on the four services run as their own processes by the supervisor
(`python -m services`, what `make run` starts):

- every operation of every service needs the API key, but for an explicit public list
  (derived from each real app's routes and OpenAPI schema, so a new route without a key is
  caught), and the running services refuse each one without the key, with a wrong one or a
  wrong Bearer token, changing nothing;
- after a full run with known secrets, none of them appears in any response, in any log line
  of the four services and the supervisor, or in what was sent to Telegram (whose API carries
  the bot token in the URL path, the one place it belongs);
- hostile webhook bodies sent over real HTTP to the running BRAIN are 4xx, never 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI

from services.brain.app import create_app as brain_app
from services.brain.settings import BrainSettings
from services.execute.app import create_app as execute_app
from services.execute.settings import ExecuteSettings
from services.notify.app import create_app as notify_app
from services.notify.settings import NotifySettings
from services.risk.app import create_app as risk_app
from services.risk.settings import RiskSettings
from tests.fakes.telegram import FakeTelegram
from tests.integration.process_fixtures import wait_healthy
from tests.stack import ROOT, SERVICE_NAMES, Stack, port_of, running_stack, stopped, until

# Distinctive secrets, so that any of them found anywhere is a leak. The webhook secret has
# a quote, a backslash and a non-ASCII letter: its JSON-escaped forms differ from it.
WEBHOOK_SECRET = 'p95-hook-"Sécret\\7Qk-w3bh00k'
ADMIN_KEY = "p95-admin-key-4Jd8Lq2WzT"
ALERT_KEY = "p95-alertmanager-key-9Tg3VbX"
TELEGRAM_TOKEN = "8123456789:AAp95-Distinct-Bot-Token-x7RkQ"
DASHBOARD_PASSWORD = "p95-dash-pw-Hm5Nc8Ue"
BINANCE_API_KEY = "p95binanceKEY3vQ8wN1zLa"
BINANCE_SECRET = "p95binanceSECRET6tY2pK9mRb"
DB_PASSWORD = "p95-db-pw-Xe4Ru7Sd"  # in DATABASE_URL; the test PostgreSQL trusts and ignores it
SECRETS = {
    "WEBHOOK_SECRET": WEBHOOK_SECRET, "PHOENIX95_API_KEYS[0]": ADMIN_KEY,
    "PHOENIX95_API_KEYS[1]": ALERT_KEY, "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
    "DASHBOARD_PASSWORD": DASHBOARD_PASSWORD, "BINANCE_API_KEY": BINANCE_API_KEY,
    "BINANCE_SECRET": BINANCE_SECRET, "DATABASE_URL password": DB_PASSWORD,
}
CHAT = 515151
KEY = {"X-API-Key": ADMIN_KEY}
DASHBOARD_USER = "operator"
DASHBOARD_AUTH = (DASHBOARD_USER, DASHBOARD_PASSWORD)

APPS = {"brain": (brain_app, BrainSettings), "risk": (risk_app, RiskSettings),
        "execute": (execute_app, ExecuteSettings), "notify": (notify_app, NotifySettings)}

# What may be reached without the API key, on any service: everything else must need it.
PUBLIC = {
    ("GET", "/health"), ("GET", "/metrics"),
    ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
# BRAIN's intake: TradingView cannot send headers; WEBHOOK_SECRET in the body or the query.
WEBHOOK = ("POST", "/webhook")
# NOTIFY's dashboard, for a browser: HTTP Basic with DASHBOARD_PASSWORD instead of the key.
DASHBOARD = {("GET", "/dashboard"), ("GET", "/dashboard/dashboard.js"),
             ("GET", "/dashboard/dashboard.css"), ("GET", "/events/stream")}
KEY_SCHEMES = [{"APIKeyHeader": []}, {"HTTPBearer": []}]

# A valid body for each operation that takes one, so that a missing key check would show as
# the operation done (2xx, a changed state), not as a 422. An operation not listed gets `{}`.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/analyze"): {"symbol": "BTCUSDT", "action": "buy", "price": 43123.5,
                           "confidence": 0.9, "rsi": 50},
    ("POST", "/check"): {"symbol": "BTCUSDT", "side": "long", "price": 43123.5,
                         "margin_fraction": 0.02},
    ("POST", "/update"): {"trading_state": "HALTED", "reason": "unauthenticated probe",
                          "changed_by": "intruder", "limits": {"max_open_positions": 1}},
    ("POST", "/trade"): {"symbol": "BTCUSDT", "side": "long", "margin_fraction": 0.02},
    ("POST", "/close"): {"all": True},
    ("POST", "/alert"): {"severity": "critical", "title": "intruder-alert-probe",
                         "message": "sent without a key"},
}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# Each must be refused: nothing, wrong values in both accepted places, near misses of the real
# key, the real key in a scheme not accepted, and the other secrets in place of the key.
REFUSED_CREDENTIALS = {
    "none": {},
    "wrong-key": {"X-API-Key": "wrong-key"},
    "empty-key": {"X-API-Key": ""},
    "wrong-bearer": {"Authorization": "Bearer wrong-token"},
    "bare-bearer": {"Authorization": "Bearer"},
    "key-prefix": {"X-API-Key": ADMIN_KEY[:-1]},
    "key-uppercased": {"X-API-Key": ADMIN_KEY.upper()},
    "key-as-basic": {"Authorization": _basic("admin", ADMIN_KEY)},
    "key-in-wrong-header": {"X-Api-Token": ADMIN_KEY},
    "dashboard-password": {"X-API-Key": DASHBOARD_PASSWORD},
    "telegram-token-bearer": {"Authorization": f"Bearer {TELEGRAM_TOKEN}"},
}


# ---------------------------------------------------------------------------------------------
# The admin surface, from the real apps
# ---------------------------------------------------------------------------------------------


def build_app(service: str) -> FastAPI:
    factory, settings_class = APPS[service]
    return factory(settings_class(_env_file=None, phoenix95_api_keys=ADMIN_KEY,
                                  dashboard_password=DASHBOARD_PASSWORD,
                                  webhook_secret="unused-here"))


def operations(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app routes, those hidden from the schema too."""
    return {(method, context.path)
            for context in fastapi.routing.iter_route_contexts(app.routes)
            for method in context.methods or () if method != "HEAD"}


def schema_security(app: FastAPI) -> dict[tuple[str, str], list[dict[str, list[str]]]]:
    """(method, path) -> the security the OpenAPI schema declares, for each operation in it."""
    return {(method.upper(), path): operation.get("security", [])
            for path, item in app.openapi()["paths"].items()
            for method, operation in item.items()}


@dataclass
class Surface:
    keyed: set[tuple[str, str]]  # operations declaring the API key (X-API-Key or Bearer)
    basic: set[tuple[str, str]]  # operations declaring HTTP Basic
    unsecured: set[tuple[str, str]]  # every other operation the app routes
    bodies: set[tuple[str, str]]  # operations with a request body

    @property
    def admin(self) -> set[tuple[str, str]]:
        """Every operation that is not public: each must need the key."""
        return (self.keyed | self.basic | self.unsecured) - PUBLIC - {WEBHOOK} - DASHBOARD

    def body(self, operation: tuple[str, str]) -> Any:
        if operation in self.bodies or (operation[0] != "GET" and operation not in self.keyed):
            return BODIES.get(operation, {})
        return None


def surface(app: FastAPI) -> Surface:
    declared = schema_security(app)
    schema = app.openapi()["paths"]
    keyed = {op for op, security in declared.items() if security == KEY_SCHEMES}
    basic = {op for op, security in declared.items() if security == [{"HTTPBasic": []}]}
    odd = {op: security for op, security in declared.items()
           if security and op not in keyed | basic}
    assert odd == {}, "operations with a security requirement this test does not know"
    bodies = {(m.upper(), p) for p, item in schema.items() for m, o in item.items()
              if "requestBody" in o}
    return Surface(keyed, basic, operations(app) - keyed - basic, bodies)


SURFACES = {service: surface(build_app(service)) for service in SERVICE_NAMES}


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_operation_but_the_public_ones_declares_the_api_key(service):
    found = SURFACES[service]
    allowed_unsecured = PUBLIC | {WEBHOOK} | DASHBOARD
    # A route added without the key (in the schema or hidden from it) lands here.
    assert found.unsecured - allowed_unsecured == set(), \
        f"{service}: operations reachable without the API key"
    assert found.admin == found.keyed
    # The dashboard is behind HTTP Basic (checked live below for its hidden static files).
    assert found.basic <= DASHBOARD
    assert found.keyed.isdisjoint(PUBLIC | DASHBOARD | {WEBHOOK})


def test_the_admin_surface_is_what_the_services_document():
    """The derivation above is not vacuous: the known admin operations are among the keyed."""
    keyed = {service: s.keyed for service, s in SURFACES.items()}
    assert {("POST", "/analyze"), ("GET", "/signals")} <= keyed["brain"]
    assert {("POST", "/check"), ("GET", "/status"), ("POST", "/update")} <= keyed["risk"]
    assert {("POST", "/trade"), ("GET", "/positions"), ("POST", "/close"), ("GET", "/orders"),
            ("GET", "/account")} <= keyed["execute"]
    assert ("POST", "/alert") in keyed["notify"]
    assert SURFACES["notify"].basic == {("GET", "/dashboard"), ("GET", "/events/stream")}
    assert WEBHOOK in SURFACES["brain"].unsecured


# ---------------------------------------------------------------------------------------------
# The services as their own processes
# ---------------------------------------------------------------------------------------------


def secret_env(telegram: FakeTelegram) -> dict[str, str]:
    return {
        "WEBHOOK_SECRET": WEBHOOK_SECRET, "PHOENIX95_API_KEYS": f"{ADMIN_KEY},{ALERT_KEY}",
        "BINANCE_API_KEY": BINANCE_API_KEY, "BINANCE_SECRET": BINANCE_SECRET,
        "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_CHAT_IDS": str(CHAT),
        "TELEGRAM_API_BASE_URL": telegram.url, "TELEGRAM_MIN_INTERVAL_S": "0",
        "DASHBOARD_PASSWORD": DASHBOARD_PASSWORD, "EXCHANGE_MODE": "paper",
    }


@asynccontextmanager
async def secured_stack(service_env: dict[str, str], tmp_path: Path,
                        **overrides: str) -> AsyncIterator[Stack]:
    """The four services with the known secrets, and a Telegram imitation with the bot token,
    in this event loop (so that it answers while the test waits)."""
    async with FakeTelegram(TELEGRAM_TOKEN) as telegram:
        env = service_env | secret_env(telegram) | overrides
        async with running_stack(env, tmp_path / "run.log", telegram) as stack:
            yield stack


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def state_of(stack: Stack) -> dict[str, Any]:
    """What an unauthenticated call must not change, read with the key."""
    async def get(service: str, path: str, **params: Any) -> Any:
        response = await stack.call(service, "GET", path, headers=KEY, params=params)
        assert response.status_code == 200, (service, path, response.text)
        return response.json()

    risk = await get("risk", "/status")
    account = await get("execute", "/account")
    return {
        "risk": {k: risk[k] for k in ("trading_state", "reason", "changed_by", "changed_at",
                                      "limits", "open_positions", "reserved_positions")},
        "signals": await get("brain", "/signals"),
        "positions": [await get("execute", "/positions", status=s) for s in ("open", "closed")],
        "orders": await get("execute", "/orders"),
        "account": {k: account[k] for k in ("wallet_balance", "equity", "used_margin")},
    }


async def test_running_services_refuse_every_admin_operation_without_the_key(
        service_env, amqp, tmp_path):
    async with secured_stack(service_env, tmp_path) as stack:
        await stack.tick("BTCUSDT", 43123.5)  # so that a /trade let through would trade
        before = await state_of(stack)
        assert before["risk"]["trading_state"] == "ACTIVE"
        answers: dict[tuple[str, str, str, str], int] = {}
        for service, found in SURFACES.items():
            for method, path in sorted(found.admin):
                for name, headers in REFUSED_CREDENTIALS.items():
                    answers[(service, method, path, name)] = await stack.status(
                        service, method, concrete(path), json=found.body((method, path)),
                        headers=headers)
            for method, path in sorted((DASHBOARD & found.unsecured) | found.basic):
                for name, auth in {"none": None, "wrong": (DASHBOARD_USER, "wrong"),
                                   "api-key": (DASHBOARD_USER, ADMIN_KEY)}.items():
                    answers[(service, method, path, f"basic-{name}")] = await stack.status(
                        service, method, path, auth=auth)
        assert len(answers) > 100
        not_refused = {call: code for call, code in answers.items() if code not in (401, 403)}
        assert not_refused == {}

        await asyncio.sleep(0.5)  # what a call let through would have set going
        assert await state_of(stack) == before
        assert not any("intruder-alert-probe" in json.dumps(call.params)
                       for call in stack.telegram.requests), "an alert without a key was sent"

        # The same calls with the key (X-API-Key, or Bearer like Alertmanager) pass the check:
        # the bodies above were valid, so the refusals were the key's doing.
        for service, found in SURFACES.items():
            for method, path in sorted(found.admin):
                headers = ({"Authorization": f"Bearer {ALERT_KEY}"} if path == "/alert"
                           else KEY)
                response = await stack.call(service, method, concrete(path),
                                            json=found.body((method, path)), headers=headers)
                assert response.status_code < 300, (service, method, path, response.text)
        assert (await state_of(stack))["risk"]["trading_state"] == "HALTED"
        assert any("intruder-alert-probe" in text for text in stack.telegram.texts(CHAT))


def _forms(secret: str) -> set[str]:
    """The secret as it would show up raw, JSON-escaped (ASCII or not) or URL-encoded."""
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
            quote(secret, safe=""), quote(secret)}


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    assert parts.password is None and parts.username
    netloc = f"{parts.username}:{password}@{parts.hostname}" + (
        f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _response_text(response: httpx.Response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
    # Only what came back: the request's own URL may carry the webhook secret (`?token=`).
    return f"{response.status_code}\n{headers}\n" \
           f"{response.content.decode('utf-8', 'backslashreplace')}"


def leaks(sources: dict[str, str]) -> dict[str, list[str]]:
    """Secret name -> the sources that contain it in any of its forms."""
    forms = {name: _forms(value) for name, value in SECRETS.items()}
    forms["DASHBOARD_PASSWORD (Basic credentials)"] = {
        _basic(DASHBOARD_USER, DASHBOARD_PASSWORD).removeprefix("Basic ")}
    return {name: found for name, variants in forms.items()
            if (found := [source for source, text in sources.items()
                          if any(variant in text for variant in variants)])}


async def first_event(stack: Stack) -> str:
    """The dashboard's first Server-Sent Event (its snapshot)."""
    async with stack.client.stream("GET", stack.url("notify", "/events/stream"),
                                   auth=DASHBOARD_AUTH) as response:
        assert response.status_code == 200
        text = ""
        async for chunk in response.aiter_text():
            text += chunk
            if "\n\n" in text and "data:" in text:
                break
    return text


async def test_no_secret_appears_in_any_response_log_or_telegram_request_after_a_full_run(
        service_env, amqp, tmp_path, postgres_url):
    database_url = _with_password(postgres_url, DB_PASSWORD)
    async with secured_stack(service_env, tmp_path, DATABASE_URL=database_url) as stack:
        # A paper position, from a webhook through BRAIN, RISK and EXECUTE.
        await stack.tick("BTCUSDT", 43123.5)
        opened = await stack.call("brain", "POST", "/webhook", json={
            "secret": WEBHOOK_SECRET, "symbol": "BINANCE:BTCUSDT.P", "action": "buy",
            "price": "43123.5", "confidence": 0.9, "rsi": 50, "strategy": "p95-security",
            "timeframe": "15", "alert_id": "security-1",
            "sent_at": datetime.now(UTC).isoformat()})
        assert opened.status_code == 202, opened.text

        async def position() -> list[Any]:
            return (await stack.call("execute", "GET", "/positions", headers=KEY)).json()

        await until(position, what="the paper position")
        # The secret in the query string with a body that fails; bad fields; missing ones.
        bad_json = await stack.call("brain", "POST", "/webhook",
                                    params={"token": WEBHOOK_SECRET}, content=b"{nope")
        bad_fields = await stack.call("brain", "POST", "/webhook",
                                      json={"secret": WEBHOOK_SECRET, "symbol": "???",
                                            "action": "hodl", "price": -1})
        missing = await stack.call("brain", "POST", "/webhook",
                                   json={"secret": WEBHOOK_SECRET, "symbol": "BTCUSDT"})
        wrong = await stack.call("brain", "POST", "/webhook",
                                 json={"secret": "wrong", "symbol": "BTCUSDT",
                                       "action": "buy", "price": 1})
        assert [r.status_code for r in (bad_json, bad_fields, missing, wrong)] == [
            422, 422, 422, 401]

        # Admin reads, with the key both ways.
        bearer = {"Authorization": f"Bearer {ADMIN_KEY}"}
        for service, path, params in [
            ("brain", "/signals", {}), ("risk", "/status", {}), ("execute", "/positions", {}),
            ("execute", "/positions", {"status": "closed"}), ("execute", "/orders", {}),
            ("execute", "/account", {}),
        ]:
            for headers in (KEY, bearer):
                response = await stack.call(service, "GET", path, params=params,
                                            headers=headers)
                assert response.status_code == 200, (service, path, response.text)
        analyzed = await stack.call("brain", "POST", "/analyze", headers=KEY,
                                    json=BODIES[("POST", "/analyze")])
        checked = await stack.call("risk", "POST", "/check", headers=KEY,
                                   json=BODIES[("POST", "/check")])
        assert (analyzed.status_code, checked.status_code) == (200, 200)
        # Refused calls: their answers must not give a key away either.
        for service, path in [("risk", "/status"), ("execute", "/account")]:
            for headers in REFUSED_CREDENTIALS.values():
                await stack.call(service, "GET", path, headers=headers)

        # Alertmanager's way in, and a Telegram command reading RISK and EXECUTE with the key.
        sent = len(stack.telegram.sent)
        alerted = await stack.call("notify", "POST", "/alert",
                                   headers={"Authorization": f"Bearer {ALERT_KEY}"},
                                   json={"severity": "warning", "title": "security run"})
        assert alerted.status_code == 202, alerted.text
        await stack.telegram.wait_sent(sent + 1, within_s=10)
        after = len(stack.telegram.sent)
        stack.telegram.add_command(CHAT, "/status")

        async def status_reply() -> bool:
            return any(m.plain.startswith("Status") for m in stack.telegram.sent[after:])

        await until(status_reply, what="the /status reply on Telegram")

        # The dashboard (with and without its password), its event stream, and the public
        # endpoints of every service.
        for path in ("/dashboard", "/dashboard/dashboard.js", "/dashboard/dashboard.css"):
            assert (await stack.call("notify", "GET", path, auth=DASHBOARD_AUTH)
                    ).status_code == 200
            assert (await stack.call("notify", "GET", path)).status_code == 401
        snapshot = await first_event(stack)
        for name in SERVICE_NAMES:
            for path in ("/health", "/metrics", "/openapi.json", "/docs", "/redoc"):
                assert (await stack.call(name, "GET", path)).status_code == 200, (name, path)

        # The run's outcome is as expected (what the sources below were produced by).
        await until(position, what="the position still open")
        assert all(call.token_ok for call in stack.telegram.requests)
        log = await stack.stop()

    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    messages = {line["message"] for line in lines}
    assert {"signal accepted", "Phoenix 95 stopped"} <= messages
    assert {line["service"] for line in lines} >= {*SERVICE_NAMES, "supervisor"}
    # The services log what they mask: had a secret been logged, it would be masked.
    sources = {"log": log, "dashboard event stream": snapshot}
    sources |= {f"response {i}: {r.request.method} {r.url.path}": _response_text(r)
                for i, r in enumerate(stack.responses)}
    # Telegram: everything it was sent, but the URL path (where its API wants the token).
    sources |= {f"telegram {i}: {call.method}": json.dumps(call.params, ensure_ascii=False)
                + json.dumps(call.params) + call.description
                for i, call in enumerate(stack.telegram.requests)}
    assert len(stack.responses) > 50 and len(stack.telegram.requests) > 3
    assert leaks(sources) == {}


async def test_leak_detection_finds_each_secret_in_each_form():
    """The check above can fail: each secret, in each form a log or a body would carry it."""
    for name, secret in SECRETS.items():
        for form in _forms(secret):
            assert leaks({"somewhere": f"prefix {form} suffix"}) == {name: ["somewhere"]}, form
    assert leaks({"clean": "nothing to see " + "*" * 10}) == {}


# ---------------------------------------------------------------------------------------------
# Hostile webhooks against BRAIN's own process (test_webhook.py has the in-process cases)
# ---------------------------------------------------------------------------------------------


def _alert(**fields: Any) -> bytes:
    return json.dumps({"secret": WEBHOOK_SECRET, "symbol": "BTCUSDT", "action": "buy",
                       "price": 43000} | fields).encode()


def _nested(depth: int) -> Any:
    value: Any = "BTCUSDT"
    for _ in range(depth):
        value = {"a": [value]}
    return value


async def _chunked(size: int) -> AsyncIterator[bytes]:
    """A body without Content-Length (chunked): BRAIN must count as it reads."""
    chunk = b'{"secret": "' + b"x" * 8186 + b'",'
    for _ in range(size // len(chunk)):
        yield chunk


HOSTILE: dict[str, tuple[Any, dict[str, str], int]] = {
    "form-encoded": (b"secret=x&symbol=BTCUSDT&action=buy&price=1",
                     {"Content-Type": "application/x-www-form-urlencoded"}, 422),
    "empty": (b"", {}, 422),
    "chunked-256-KiB": (_chunked, {}, 413),
    "nested-symbol": (_alert(symbol=_nested(300)), {}, 422),
    "wrong-types": (_alert(symbol=42, action=["buy"], price={"$gt": 0}), {}, 422),
    "minus-infinity": (_alert(price=float("-inf")), {}, 422),
    "invalid-utf8": (_alert().replace(b"BTCUSDT", b"BTC\xff\xfeUSDT"), {}, 422),
    "lone-surrogate": (_alert(strategy="p95\ud800"), {}, 422),
    "right-to-left-secret": (_alert(secret="\u202eterces-🙂"), {}, 401),
    "secret-as-object": (_alert(secret={"$ne": None}), {}, 401),
}


async def test_hostile_webhooks_to_the_running_brain_are_4xx_never_5xx(
        service_env, amqp, tmp_path):
    from shared.db.migrate import upgrade

    await asyncio.to_thread(upgrade, service_env["DATABASE_URL"])
    env = service_env | {"WEBHOOK_SECRET": WEBHOOK_SECRET, "PHOENIX95_API_KEYS": ADMIN_KEY}
    port = port_of(env, "brain")
    log_path = tmp_path / "brain.log"
    with log_path.open("wb") as log:
        brain = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.brain", cwd=ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT)
    try:
        await asyncio.to_thread(wait_healthy, port, 30)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            answers = {}
            for name, (content, headers, _) in HOSTILE.items():
                body = content(256 * 1024) if callable(content) else content
                response = await client.post("/webhook", content=body, headers=headers)
                answers[name] = response.status_code
            signals = await client.get("/signals", headers=KEY)
    finally:
        await stopped(brain, signal.SIGTERM)
    assert answers == {name: expected for name, (_, _, expected) in HOSTILE.items()}
    assert signals.json() == []
    assert "Traceback" not in log_path.read_text(errors="backslashreplace")
