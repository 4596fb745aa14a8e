"""EXECUTE killed with SIGKILL after its entry order reached the exchange but before the
approval was acked: after the restart there is one order and one position."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from services.execute.models import PositionRecord
from shared.db import create_engine, session_factory
from shared.db.migrate import upgrade
from shared.messaging import topology
from tests.conftest import AMQP_URL, REDIS_URL
from tests.fakes.binance import API_KEY, SECRET, Failure, FakeBinance, brackets
from tests.integration.conftest import API_KEY as PHOENIX95_API_KEY
from tests.integration.execute_fixtures import approval, plan
from tests.integration.serving import free_port

ORDER = "/fapi/v1/order"


def start_execute(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "services.execute"], env=env,
                            stdout=log.open("a"), stderr=subprocess.STDOUT)


async def test_sigkill_between_the_fill_and_the_ack(vhost, redis_prefix, tmp_path, broker,
                                                   amqp):
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'execute.db'}"
    await asyncio.to_thread(upgrade, database_url)
    db = create_engine(database_url)
    sessions = session_factory(db)
    log = tmp_path / "execute.log"
    async with FakeBinance() as fake:
        fake.add_symbol("BTCUSDT", tick="0.1", step="0.001", min_notional="100",
                        leverage_brackets=brackets((0, 50_000, 0.004, 0, 125)), price=43123.5)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "REDIS_"))}
        env |= {"AMQP_URL": AMQP_URL, "AMQP_VHOST": vhost, "REDIS_URL": REDIS_URL,
                "REDIS_PREFIX": redis_prefix, "DATABASE_URL": database_url,
                "PHOENIX95_API_KEYS": PHOENIX95_API_KEY, "EXECUTE_PORT": str(free_port()),
                "EXCHANGE_MODE": "live", "BINANCE_API_KEY": API_KEY, "BINANCE_SECRET": SECRET,
                "BINANCE_API_BASE_URL": fake.url, "ALLOWED_SYMBOLS": "BTCUSDT",
                "MARKET_DATA": "none", "EXCHANGE_TIMEOUT_S": "20"}
        # The entry reaches the exchange and fills; its answer hangs: EXECUTE dies waiting.
        fake.fail(ORDER, Failure.timeout(delay_s=15.0, processed=True), times=1, method="POST")
        process = start_execute(env, log)
        try:
            await broker.publish(approval(plan()), topology.RISK_MANAGEMENT.name,
                                 "trade.execute")
            for _ in range(300):
                if any(r.params.get("newClientOrderId", "").startswith("p95-")
                       for r in fake.received(ORDER, "POST")):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            assert len(fake.orders) == 1, "the entry should be on the exchange"
            fake.heal()

            process = start_execute(env, log)

            async def positions() -> int:
                async with sessions() as session:
                    return await session.scalar(select(func.count()).select_from(
                        PositionRecord)) or 0

            for _ in range(300):
                if await positions() == 1:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            assert await positions() == 1
            entries = [o for o in fake.orders.values()
                       if o.client_order_id.startswith("p95-") and not o.reduce_only]
            assert len(entries) == 1
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
            await db.dispose()
