"""`make run`: prepare the broker vhost and the database, then run every service that exists,
restarting one that dies after a second (like compose's restart policy). Ctrl-C stops all."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aio_pika
from aio_pika.exceptions import InvalidFrameError, ProbableAuthenticationError
from yarl import URL

from shared.config import Settings
from shared.db.migrate import upgrade
from shared.messaging.broker import amqp_url
from shared.observability.logging import configure_logging, get_logger

log = get_logger("supervisor")

SERVICES = {"brain": 8100, "risk": 8101, "execute": 8102, "notify": 8103}
RESTART_DELAY_S = 1.0
STOP_GRACE_S = 15.0


def existing_services() -> list[str]:
    """Services whose package can be started (`python -m services.<name>`)."""
    here = Path(__file__).parent
    return [name for name in SERVICES if (here / name / "__main__.py").exists()]


async def ensure_vhost(settings: Settings) -> None:
    """Create `AMQP_VHOST` on a local broker that lacks it (the compose broker has it)."""
    try:
        connection = await aio_pika.connect(amqp_url(settings), timeout=10)
        await connection.close()
        return
    except (ProbableAuthenticationError, InvalidFrameError):
        # RabbitMQ answers an unknown vhost like refused credentials, or (3.10 with recent
        # aiormq) with a Connection.Close where Connection.OpenOk was expected.
        pass
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    user = URL(settings.amqp_url.get_secret_value()).user or "guest"
    log.info("creating the RabbitMQ vhost", vhost=settings.amqp_vhost)
    try:
        for args in (["add_vhost", settings.amqp_vhost],
                     ["set_permissions", "-p", settings.amqp_vhost, user, ".*", ".*", ".*"]):
            await asyncio.to_thread(
                subprocess.run, [ctl, *args], check=True, capture_output=True, timeout=120
            )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(
            f"RabbitMQ has no vhost {settings.amqp_vhost!r} and it could not be created "
            f"({exc}); create it: rabbitmqctl add_vhost {settings.amqp_vhost}"
        ) from exc


async def supervise(name: str, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", f"services.{name}")
        log.info("service started", child=name, pid=process.pid)
        exited = asyncio.ensure_future(process.wait())
        stop = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.is_set():
            stop.cancel()
            await _stop(process, exited, name)
            return
        stop.cancel()
        log.error("service exited; restarting", child=name, returncode=exited.result(),
                  restart_in_s=RESTART_DELAY_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), RESTART_DELAY_S)


async def _stop(process: asyncio.subprocess.Process, exited: asyncio.Future, name: str) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    try:
        await asyncio.wait_for(exited, STOP_GRACE_S)
    except TimeoutError:
        process.kill()
        await exited
    log.info("service stopped", child=name)


async def main() -> None:
    settings = Settings()
    configure_logging("supervisor", level=settings.log_level, fmt=settings.log_format,
                      secrets=settings.secret_values())
    await ensure_vhost(settings)
    await asyncio.to_thread(upgrade, settings.database_url.get_secret_value())
    names = existing_services()
    log.info("Phoenix 95 starting", services=names, mode=settings.exchange_mode.value,
             webhook="http://localhost:8100/webhook",
             dashboard="http://localhost:8103/dashboard" if "notify" in names else None)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await asyncio.gather(*(supervise(name, stopping) for name in names))
    log.info("Phoenix 95 stopped")
