"""Fault injection on the whole system (issue 6): the four services run by the supervisor as
`make run` does, on PostgreSQL, driven only through their public surfaces (TradingView's
webhook, ticks into Redis the way the market feed writes them). During a burst of alerts one
thing fails: a service is SIGKILLed (the supervisor starts it again), or RabbitMQ, Redis or
PostgreSQL is restarted. Afterwards every alert BRAIN accepted (202) must have exactly one
outcome (HOLD, REJECT, a risk rejection, a position or an entry the exchange refused), no
order doubled at the exchange, nothing lost; and the system must recover within 10 s.

Recovery is measured from the end of the fault (the kill; the infrastructure answering again
after its restart) to the later of: every service healthy again, and every alert accepted
before that moment having its outcome. Each case writes its numbers to
`var/artifacts/faults.json` (quoted in the README)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tests.conftest import AMQP_URL, REDIS_URL, rabbitmqctl
from tests.outcomes import Outcome, book_mismatches, burst_alert, outcomes
from tests.stack import ROOT, SERVICE_NAMES, Stack, feed_ticks, running_stack, stack_env, until

SECRET = "fault-webhook-secret-3k9"
KEY = "fault-api-key-8q2"
BURST = 90  # alerts, at least
RATE = 15.0  # alerts per second
FAULT_AT_S = 2.0  # into the burst
OUTAGE_S = 2.0  # how long restarted infrastructure stays down
AFTER_S = 3.0  # the burst goes on this long after the system is healthy again
RECOVERY_LIMIT_S = 10.0
ARTIFACT = ROOT / "var" / "artifacts" / "faults.json"
PG_CLUSTER = sorted(os.listdir("/etc/postgresql"))[-1] if Path("/etc/postgresql").exists() else ""
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "6379", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]


@dataclass
class Sent:
    alert_id: str
    status: int  # 0: no answer (connection refused while BRAIN was down)
    signal_id: str | None
    sent_at: float  # monotonic
    answered_in_s: float


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=120)


async def ping_until_up(probe: Callable[[], Awaitable[Any]], what: str) -> None:
    async def answers() -> bool:
        try:
            await probe()
            return True
        except Exception:  # anything but an answer means not up yet
            return False

    await until(answers, 60, what=what, every_s=0.05)


# Each fault: what it does, given the running stack; it returns once the fault is over
# (the process killed; the infrastructure answering again).


async def kill(stack: Stack, service: str) -> None:
    os.kill(stack.pid(service), signal.SIGKILL)


async def restart_rabbitmq(stack: Stack) -> None:
    await asyncio.to_thread(rabbitmqctl, "stop_app")
    await asyncio.sleep(OUTAGE_S)
    await asyncio.to_thread(rabbitmqctl, "start_app")
    await asyncio.to_thread(rabbitmqctl, "await_startup")


async def restart_redis(stack: Stack) -> None:
    """A restart that keeps the data, as compose's Redis does with its append-only file: this
    one saves a snapshot on shutdown and loads it at start."""
    redis = Redis.from_url(REDIS_URL)
    with contextlib.suppress(RedisError):  # the connection drops as the server exits
        await redis.shutdown(save=True)
    await asyncio.sleep(OUTAGE_S)
    await asyncio.to_thread(run, *REDIS_START)
    await ping_until_up(redis.ping, "Redis")
    await redis.aclose()
    await asyncio.to_thread(Path("/var/lib/redis/dump.rdb").unlink, missing_ok=True)


async def restart_postgres(stack: Stack) -> None:
    ctl = ["pg_ctlcluster", "--skip-systemctl-redirect", PG_CLUSTER, "main"]
    await asyncio.to_thread(run, *ctl, "stop", "-m", "fast")
    await asyncio.sleep(OUTAGE_S)
    await asyncio.to_thread(run, *ctl, "start")

    async def connect() -> None:
        import asyncpg

        connection = await asyncpg.connect("postgresql://postgres@localhost:5432/postgres")
        await connection.close()

    await ping_until_up(connect, "PostgreSQL")


FAULTS: dict[str, Callable[[Stack], Awaitable[None]]] = {
    **{f"sigkill-{name}": (lambda stack, name=name: kill(stack, name)) for name in SERVICE_NAMES},
    "restart-rabbitmq": restart_rabbitmq,
    "restart-redis": restart_redis,
    "restart-postgres": restart_postgres,
}


async def send_burst(client: httpx.AsyncClient, url: str, alert: Callable[[int], dict[str, Any]],
                     until_done: asyncio.Event) -> list[Sent]:
    """Alert i at its time (RATE per second), without waiting for earlier answers, at least
    BURST of them and on until `until_done` is set."""
    start = time.monotonic()

    async def send(body: dict[str, Any]) -> Sent:
        sent_at = time.monotonic()
        try:
            response = await client.post(url, json=body, timeout=10)
            status, answer = response.status_code, response.json()
        except (httpx.TransportError, ValueError):
            status, answer = 0, {}
        return Sent(body["alert_id"], status, answer.get("signal_id"), sent_at,
                    time.monotonic() - sent_at)

    sending = []
    i = 0
    while i < BURST or not until_done.is_set():
        await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
        sending.append(asyncio.create_task(send(alert(i))))
        i += 1
    return await asyncio.gather(*sending)


async def watch_health(stack: Stack, since: float) -> float:
    """The first moment (monotonic) after `since` at which all four services are healthy."""
    while True:
        now = time.monotonic()
        if all(await asyncio.gather(*(stack.is_healthy(s) for s in SERVICE_NAMES))):
            return now
        await asyncio.sleep(0.1)


def record(case: str, numbers: dict[str, Any]) -> None:
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
    results[case] = numbers
    ARTIFACT.write_text(json.dumps(results, indent=2, sort_keys=True))


@pytest.mark.parametrize("case", list(FAULTS))
async def test_every_accepted_alert_has_exactly_one_outcome_through_a_fault(
        case, vhost, redis_prefix, postgres_url, amqp, tmp_path):
    env = stack_env(amqp_url=AMQP_URL, vhost=vhost, redis_url=REDIS_URL,
                    redis_prefix=redis_prefix, database_url=postgres_url,
                    WEBHOOK_SECRET=SECRET, PHOENIX95_API_KEYS=KEY,
                    # The burst must exercise every service, not stop at RISK's daily limits.
                    MAX_ORDERS_PER_MINUTE="1000", MAX_DAILY_TRADES="10000",
                    # All of it comes from one address here, TradingView's from four.
                    RATE_LIMIT_PER_MINUTE="100000")
    run_id = f"{case}-{uuid.uuid4().hex[:6]}"
    sent_at = datetime.now(UTC).isoformat()
    async with running_stack(env, tmp_path / "run.log") as stack:
        stop_ticks = asyncio.Event()
        ticks = asyncio.create_task(feed_ticks(stack, stop_ticks))
        await asyncio.sleep(0.5)  # a price for every symbol before the first alert
        burst_over = asyncio.Event()
        burst = asyncio.create_task(send_burst(
            stack.client, stack.url("brain", "/webhook"),
            lambda i: burst_alert(SECRET, run_id, i, sent_at), burst_over))
        await asyncio.sleep(FAULT_AT_S)
        fault_started = time.monotonic()
        await FAULTS[case](stack)
        fault_ended, fault_ended_wall = time.monotonic(), datetime.now(UTC)
        healthy_at = await asyncio.wait_for(watch_health(stack, fault_ended), 60)
        await asyncio.sleep(AFTER_S)  # the burst goes on past the recovery
        burst_over.set()
        sent = await burst

        accepted = {s.signal_id: s for s in sent if s.status == 202}
        assert len(accepted) >= RATE * (FAULT_AT_S + AFTER_S) * 0.8, f"{len(accepted)} accepted"

        async def settled() -> dict[str, Outcome] | None:
            found = await outcomes(postgres_url, list(accepted))
            return found if all(o.final for o in found.values()) else None

        try:
            found = await until(settled, 60, what="every accepted alert's outcome", every_s=0.5)
        except AssertionError:
            found = await outcomes(postgres_url, list(accepted))
        stop_ticks.set()
        await ticks
        await asyncio.sleep(1)  # anything still being redelivered lands before the last read
        found = await outcomes(postgres_url, list(accepted))
        mismatches = await book_mismatches(postgres_url)

    problems = {o.signal_id: p for o in found.values() if (p := o.problems())}
    # The backlog: what was accepted before every service answered healthy again.
    backlog = [o for o in found.values() if accepted[o.signal_id].sent_at < healthy_at]
    caught_up_s = max([(o.settled_at - fault_ended_wall).total_seconds()
                       for o in backlog if o.settled_at], default=0.0)
    healthy_again_s = healthy_at - fault_ended
    # When webhooks were accepted again (to within the 1/RATE between two alerts).
    accepting_again_s = min(s.sent_at for s in sent
                            if s.status == 202 and s.sent_at >= fault_ended) - fault_ended
    recovery_s = max(healthy_again_s, caught_up_s, accepting_again_s, 0.0)
    finals = sorted({o.final for o in found.values()})
    numbers = {
        "fault_lasted_s": round(fault_ended - fault_started, 2),
        "recovery_s": round(recovery_s, 2), "healthy_again_s": round(healthy_again_s, 2),
        "caught_up_s": round(caught_up_s, 2), "accepting_again_s": round(accepting_again_s, 2),
        "sent": len(sent), "accepted": len(accepted),
        "refused": {str(code): sum(1 for s in sent if s.status == code)
                    for code in sorted({s.status for s in sent if s.status != 202})},
        "outcomes": {final: sum(1 for o in found.values() if o.final == final)
                     for final in finals},
        "lost": sum(1 for o in found.values() if o.final is None),
        "duplicated": sum(1 for o in found.values() if o.doubled),
    }
    record(case, numbers)
    print(case, json.dumps(numbers))
    assert problems == {}, numbers
    # EXECUTE's book is the exchange's: one position per symbol, same side, same size.
    assert mismatches == {}
    assert "POSITION" in numbers["outcomes"], numbers  # the burst reached EXECUTE
    assert recovery_s < RECOVERY_LIMIT_S, numbers
