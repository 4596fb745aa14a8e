"""The daily summary at 00:00 UTC, end to end: EXECUTE (paper) served over real HTTP with
closed positions in its table, NOTIFY on a clock set just before midnight, the summary read
in the Telegram imitation; once only, across a restart and across two replicas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest

from services.execute.models import PositionRecord
from services.notify.summary import Clock
from tests.fakes.telegram import FakeTelegram
from tests.integration.execute_fixtures import KEY, Execute, execute_settings, running_execute
from tests.integration.notify_fixtures import CHAT
from tests.integration.serving import served

DAY = date(2026, 11, 20)
PNLS = {  # hours into DAY (UTC) → realized PnL; closes outside DAY must not count
    -1: -300.0, 0: 10.5, 9: -20.25, 12: 0.0, 23.99: 74.55, 24: 500.0}


def clock_from(start: datetime) -> Clock:
    """The real clock moved to `start`: it runs, so the scheduler's sleeps are real."""
    began = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


def at(day: date, hours: float) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hours)


@pytest.fixture
async def execute(vhost, redis_prefix, sqlite_url, amqp) -> AsyncIterator[tuple[Execute, str]]:
    async with running_execute(execute_settings(vhost, redis_prefix, sqlite_url)) as running:
        async with running.app.state.engine.sessions.begin() as session:
            session.add_all([PositionRecord(
                position_id=f"p-{i}", signal_id=f"s-{i}", symbol="BTCUSDT", side="long",
                status="closed", quantity=0.0, initial_quantity=0.01, entry_price=60000.0,
                margin=30.0, leverage=20, liquidation_price=57300.0, realized_pnl=pnl,
                opened_at=at(DAY, hours - 1), closed_at=at(DAY, hours))
                for i, (hours, pnl) in enumerate(PNLS.items())])
        async with served(running.app) as url:
            yield running, url


def summaries(telegram: FakeTelegram) -> list[str]:
    return [m.plain for m in telegram.sent if m.chat_id == CHAT
            and m.plain.startswith("📊 Daily summary")]


async def wait_summaries(telegram: FakeTelegram, count: int, within_s: float) -> list[str]:
    deadline = time.monotonic() + within_s
    while len(found := summaries(telegram)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} summaries, {count} expected: {found}")
        await asyncio.sleep(0.1)
    return found


async def test_at_midnight_the_day_is_summed_up_once_even_after_a_restart(
        make_notify, telegram, execute):
    running, url = execute
    equity = (await running.client.get("/account", headers=KEY)).json()["equity"]
    clock = clock_from(at(DAY, 24) - timedelta(seconds=2))  # 23:59:58
    async with make_notify(clock=clock, execute_url=url, risk_url=url):
        # Started after the midnight of DAY-1 with no summary of it yet: sent at once.
        [day_before] = await wait_summaries(telegram, 1, within_s=10)
        assert clock() < at(DAY, 24)
        [_, summary] = await wait_summaries(telegram, 2, within_s=10)
        assert clock() >= at(DAY, 24)
    assert day_before.splitlines()[:3] == [
        "📊 Daily summary · 2026-11-19", "🔴 PnL -300.00 USDT",
        "Trades 1 · wins 0 · win rate 0.00%"]
    assert summary.splitlines() == [
        "📊 Daily summary · 2026-11-20", "🟢 PnL +64.80 USDT",
        "Trades 4 · wins 2 · win rate 50.00%", f"Equity {equity:,.2f} USDT"]

    # Restarted a little after that midnight: the day's summary went already.
    async with make_notify(clock=clock_from(at(DAY, 24) + timedelta(seconds=5)),
                           execute_url=url, risk_url=url):
        await asyncio.sleep(3.0)
    assert len(summaries(telegram)) == 2


async def test_two_replicas_send_it_once(make_notify, telegram, execute):
    _, url = execute
    # Slow answers: each replica's check of `notifications` comes before the other's record.
    telegram.latency_s = 1.0
    clock = clock_from(at(DAY, 24) - timedelta(seconds=8))  # one clock: both wake together
    async with make_notify(clock=clock, execute_url=url, risk_url=url), \
            make_notify(clock=clock, execute_url=url, risk_url=url):
        await wait_summaries(telegram, 2, within_s=20)
        await asyncio.sleep(3.0)  # time for a second copy to show
    assert [text.splitlines()[0] for text in summaries(telegram)] == [
        "📊 Daily summary · 2026-11-19", "📊 Daily summary · 2026-11-20"]
