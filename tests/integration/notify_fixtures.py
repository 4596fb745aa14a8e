"""NOTIFY running in-process against the test infrastructure and a Telegram imitation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from services.notify.app import create_app
from services.notify.messages import DIGEST_SEPARATOR
from services.notify.settings import NotifySettings
from services.notify.summary import Clock, utc_now
from tests.fakes.telegram import TOKEN, FakeTelegram, SentMessage
from tests.integration.conftest import infrastructure

CHAT = 424242
STRANGER = 999


def told(message: SentMessage) -> list[str]:
    """What one Telegram message tells, one plain text per event: a digest (a backlog merged
    into one message, delivery.py) taken apart, its header checked against its parts."""
    head, *parts = message.plain.split(DIGEST_SEPARATOR)
    if not parts:
        return [head]
    assert head == f"🗂 {len(parts)} messages", head
    return parts


def first_told(sent: list[SentMessage], heading: str, after: int = 0) -> str | None:
    """The plain text of the first event told in CHAT, from the `after`th message sent on,
    with `heading` in its first line; looked for inside digests too."""
    return next((text for m in sent[after:] if m.chat_id == CHAT
                 for text in told(m) if heading in text.splitlines()[0]), None)


@asynccontextmanager
async def running_notify(settings: NotifySettings, clock: Clock = utc_now):
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.ready, 30)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notify") as client:
            yield client


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def make_notify(vhost, redis_prefix, sqlite_url, amqp, telegram):
    def factory(clock: Clock = utc_now, **overrides):
        values = infrastructure(vhost, redis_prefix, sqlite_url) | {
            "telegram_bot_token": TOKEN, "telegram_chat_ids": str(CHAT),
            "telegram_api_base_url": telegram.url, "telegram_min_interval_s": 0.0}
        return running_notify(NotifySettings(_env_file=None, **(values | overrides)), clock)

    return factory


