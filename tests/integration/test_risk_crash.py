"""RISK killed (SIGKILL) in the middle of a stream of analyses: every analysis still gets
exactly one verdict."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from sqlalchemy import func, select

from services.risk.models import VerdictRecord
from shared.db import create_engine, session_factory
from shared.db.migrate import upgrade
from tests.conftest import AMQP_URL, REDIS_URL
from tests.integration.conftest import API_KEY
from tests.integration.helpers import body, drain
from tests.integration.risk_fixtures import analysis, publish_analysis
from tests.integration.serving import free_port

SYMBOLS = [f"COIN{i:03d}USDT" for i in range(100)]


def start_risk(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.risk"], env=env,
                            stdout=log.open("a"), stderr=subprocess.STDOUT)


async def verdict_count(sessions) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(VerdictRecord)) or 0


async def test_sigkill_during_a_stream_of_100_analyses(vhost, redis_prefix, tmp_path, broker,
                                                      amqp):
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'risk.db'}"
    await asyncio.to_thread(upgrade, database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "REDIS_"))}
    env |= {"AMQP_URL": AMQP_URL, "AMQP_VHOST": vhost, "REDIS_URL": REDIS_URL,
            "REDIS_PREFIX": redis_prefix, "DATABASE_URL": database_url,
            "PHOENIX95_API_KEYS": API_KEY, "RISK_PORT": str(free_port()),
            "ALLOWED_SYMBOLS": ",".join(SYMBOLS), "AMQP_PREFETCH": "8"}
    db = create_engine(database_url)
    sessions = session_factory(db)
    log = tmp_path / "risk.log"
    process = start_risk(env, log)
    try:
        analyses = [analysis(symbol=s, price=10.0) for s in SYMBOLS]
        for payload in analyses:
            await publish_analysis(broker, payload)
        for _ in range(300):  # kill it once it is well into the stream
            if await verdict_count(sessions) >= 15:
                break
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        killed_at = await verdict_count(sessions)
        assert killed_at < 100, "RISK finished before it could be killed"

        process = start_risk(env, log)
        for _ in range(600):
            if await verdict_count(sessions) == 100:
                break
            await asyncio.sleep(0.1)
        assert await verdict_count(sessions) == 100
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        await db.dispose()

    messages = [body(m) for m in await drain(amqp, "notify_events", expect=100, timeout_s=30)]
    copies: dict[str, set[str]] = defaultdict(set)
    for message in messages:
        if message["type"] in ("trade.approved", "trade.rejected"):
            copies[message["correlation_id"]].add(json.dumps(message, sort_keys=True))
    assert set(copies) == {a.signal.signal_id for a in analyses}
    # A verdict re-sent after the crash is the same message (same id, same decision) that
    # consumers drop; a second decision would differ at least in its time.
    assert all(len(versions) == 1 for versions in copies.values())
