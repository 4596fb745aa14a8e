"""NOTIFY's dashboard over real HTTP: the password, the event stream, and the page in headless
Chromium following a signal from BRAIN's webhook to an open position, with no reload."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import async_playwright

from services.notify.app import create_app
from services.notify.settings import NotifySettings
from shared.contracts import Action, Envelope, Signal, SignalReceived
from shared.messaging import topology
from tests.fakes.telegram import TOKEN
from tests.integration.conftest import (
    Brain,
    alert,
    infrastructure,
)
from tests.integration.execute_fixtures import (
    Execute,
    until,
)
from tests.integration.notify_fixtures import CHAT
from tests.integration.process_fixtures import port_of, wait_healthy
from tests.integration.serving import free_port, served

PASSWORD = "dashboard-pass-8e21"
ROOT = Path(__file__).parents[2]
SCREENSHOT = ROOT / "var" / "artifacts" / "dashboard.png"
README_IMAGE = ROOT / "docs" / "dashboard.png"


@asynccontextmanager
async def served_notify(settings: NotifySettings) -> AsyncIterator[tuple[FastAPI, str]]:
    """NOTIFY started and served on a localhost port: (its app, its base URL)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.ready, 30)
        async with served(app) as url:
            yield app, url


@pytest.fixture
def notify_settings(vhost, redis_prefix, sqlite_url, amqp, telegram):
    def build(**urls: str) -> NotifySettings:
        nowhere = f"http://127.0.0.1:{free_port()}"  # refused: that service is down
        values = infrastructure(vhost, redis_prefix, sqlite_url) | {
            "telegram_bot_token": TOKEN, "telegram_chat_ids": str(CHAT),
            "telegram_api_base_url": telegram.url, "telegram_min_interval_s": 0.0,
            "dashboard_password": PASSWORD,
            "brain_url": nowhere, "risk_url": nowhere, "execute_url": nowhere}
        return NotifySettings(_env_file=None, **(values | urls))

    return build


@dataclass
class Trading:
    brain: Brain
    execute: Execute
    notify_url: str


@pytest.fixture
async def trading(system, notify_settings) -> AsyncIterator[Trading]:
    """BRAIN, RISK and EXECUTE (paper) in-process and served, NOTIFY polling them."""
    brain, risk, execute = system
    async with AsyncExitStack() as stack:
        urls = {f"{name}_url": await stack.enter_async_context(served(service.app))
                for name, service in (("brain", brain), ("risk", risk), ("execute", execute))}
        _, notify_url = await stack.enter_async_context(served_notify(notify_settings(**urls)))
        yield Trading(brain, execute, notify_url)


async def test_the_dashboard_and_its_stream_need_the_password(notify_settings):
    async with served_notify(notify_settings()) as (_, url), \
            httpx.AsyncClient(base_url=url, timeout=5) as client:
        for path in ("/dashboard", "/dashboard/dashboard.js", "/events/stream"):
            for auth in (None, ("operator", "wrong-password"), ("operator", "")):
                refused = await client.get(path, auth=auth)
                assert refused.status_code == 401, (path, auth)
                assert refused.headers["www-authenticate"].startswith("Basic ")
        page = await client.get("/dashboard", auth=("anyone", PASSWORD))
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script src="/dashboard/dashboard.js"></script>' in page.text
        script = await client.get("/dashboard/dashboard.js", auth=("anyone", PASSWORD))
        assert script.status_code == 200 and "EventSource" in script.text


async def test_without_a_password_the_dashboard_is_open(notify_settings):
    async with served_notify(notify_settings(dashboard_password=None)) as (_, url), \
            httpx.AsyncClient(base_url=url, timeout=5) as client:
        assert (await client.get("/dashboard")).status_code == 200


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) of each SSE event; heartbeats (comments) as ("heartbeat", None)."""
    name, data = None, None
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield "heartbeat", None
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "" and name is not None:
            yield name, data
            name, data = None, None


async def test_the_stream_sends_a_snapshot_then_updates_and_ends_on_shutdown(
        notify_settings, broker):
    async with served_notify(notify_settings()) as (app, url), \
            httpx.AsyncClient(base_url=url, auth=("operator", PASSWORD), timeout=10) as client, \
            client.stream("GET", "/events/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        name, snapshot = await anext(events)
        assert name == "snapshot"
        assert set(snapshot) >= {"services", "trading", "equity", "daily_pnl",
                                 "equity_history", "positions", "funnel", "feed"}
        assert snapshot["funnel"]["received"] == 0

        received = SignalReceived(signal=Signal(
            signal_id="s-stream", symbol="ETHUSDT", action=Action.LONG, price=2500.0,
            confidence=0.9, strategy="test", received_at=datetime.now(UTC)))
        await broker.publish(Envelope.wrap(received, producer="test", correlation_id="c"),
                             topology.TRADING_SIGNALS.name, "signal.received.ETHUSDT")
        seen: dict[str, Any] = {}
        async with asyncio.timeout(10):
            # Until the signal and a poll since the broker connected have both arrived
            # (BRAIN, RISK and EXECUTE are down; NOTIFY itself is up).
            while not (seen.get("received") and seen.get("brain") == "unreachable"
                       and seen.get("notify") == "ok"):
                name, update = await anext(events)
                assert name == "update"
                seen["received"] = update["funnel"]["received"]
                seen["brain"] = update["services"]["brain"]["status"]
                seen["notify"] = update["services"]["notify"]["status"]
                seen.setdefault("feed", []).extend(update["feed"])
        assert seen["received"] == 1
        assert [item["symbol"] for item in seen["feed"]] == ["ETHUSDT"]

        assert len(app.state.dashboard.hub.clients) == 1
        app.state.end_streams()  # what the runner does as soon as shutdown begins
        async with asyncio.timeout(2):
            async for name, _ in events:
                assert name in ("update", "heartbeat")
        assert app.state.dashboard.hub.clients == set()


async def test_a_client_that_goes_away_is_forgotten(notify_settings):
    async with served_notify(notify_settings()) as (app, url), \
            httpx.AsyncClient(base_url=url, auth=("operator", PASSWORD), timeout=10) as client:
        async with client.stream("GET", "/events/stream") as response:
            assert (await anext(sse_events(response)))[0] == "snapshot"
            assert len(app.state.dashboard.hub.clients) == 1

        async def forgotten() -> bool:
            return not app.state.dashboard.hub.clients

        await until(forgotten, timeout_s=2, what="the client forgotten")


def test_shutdown_ends_open_streams_at_once(service_env, amqp, tmp_path):
    """`python -m services.notify` stopped with a dashboard open: its stream ends as shutdown
    begins, not after uvicorn's 10 s graceful wait."""
    from shared.db.migrate import upgrade

    upgrade(service_env["DATABASE_URL"])
    port = port_of(service_env, "notify")
    log = (tmp_path / "notify.log").open("w+")
    process = subprocess.Popen([sys.executable, "-m", "services.notify"], cwd=tmp_path,
                               env=service_env | {"DASHBOARD_PASSWORD": PASSWORD},
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=("operator", PASSWORD),
                          timeout=5) as client, \
                client.stream("GET", "/events/stream") as response:
            lines = response.iter_lines()
            assert next(lines) == "event: snapshot"
            process.send_signal(signal.SIGTERM)
            stopping = time.monotonic()
            for _ in lines:  # to its end; a stream left open would time out reading
                pass
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
        assert time.monotonic() - stopping < 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_a_signal_appears_on_the_open_page_without_a_reload(trading, telegram):
    requests: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                   headless=True)
        try:
            context = await browser.new_context(
                http_credentials={"username": "operator", "password": PASSWORD},
                viewport={"width": 1360, "height": 720})
            page = await context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            await page.goto(f"{trading.notify_url}/dashboard")
            await page.wait_for_selector("#connection.live")
            for service in ("brain", "risk", "execute", "notify"):  # as polled
                await page.wait_for_selector(
                    f'#services li[data-service="{service}"][data-status="ok"]')
            await page.evaluate("window.__marker = 1")

            # Telegram away: NOTIFY's Telegram consumers wait, the dashboard does not.
            await telegram.down()
            await trading.execute.tick("BTCUSDT", 43123.5)
            now = datetime.now(UTC).isoformat()
            for alert_id, confidence in (("dash-1", 0.9), ("dash-hold", 0.1)):
                answer = await trading.brain.client.post("/webhook", json=alert(
                    alert_id=alert_id, confidence=confidence, sent_at=now))
                assert answer.status_code == 202, answer.text

            row = page.locator('#positions tr[data-symbol="BTCUSDT"]')
            await row.wait_for(timeout=20_000)
            await trading.execute.tick("BTCUSDT", 43300.0)  # a mark: PnL and distance
            await page.wait_for_selector('#positions tr[data-symbol="BTCUSDT"] td.liq-ok',
                                         timeout=10_000)
            await page.wait_for_selector('[data-stage="filled"] .count:text-is("1")')
            assert await page.evaluate("window.__marker") == 1  # the same page all along

            cells = await row.locator("td").all_text_contents()
            assert cells[0:2] == ["BTCUSDT", "long"]
            assert cells[2] == "0.092"
            assert cells[7:9] == ["42,261", "43,986"]  # SL and TP
            assert cells[5].startswith("+")  # marked above the entry
            counts = {stage: await page.locator(f'[data-stage="{stage}"] .count').inner_text()
                      for stage in ("signals", "EXECUTE", "HOLD", "REJECT", "approved",
                                    "filled")}
            assert (counts["signals"], counts["EXECUTE"], counts["approved"],
                    counts["filled"]) == ("2", "1", "1", "1")
            assert int(counts["HOLD"]) + int(counts["REJECT"]) == 1
            feed = await page.locator("#feed li").all_inner_texts()
            assert any("opened long 0.092" in line for line in feed)
            assert await page.locator("#trading").inner_text() == "trading: ACTIVE"

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            if os.environ.get("UPDATE_README_IMAGE"):  # else every run would dirty the tree
                shutil.copyfile(SCREENSHOT, README_IMAGE)
        finally:
            await browser.close()
            await telegram.heal()

    assert requests, "the page made no request"
    outside = [url for url in requests if urlsplit(url).hostname not in ("127.0.0.1",
                                                                          "localhost")]
    assert outside == []
