"""BRAIN as its own process (`python -m services.brain`) and under the supervisor (`make run`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import AMQP_URL
from tests.integration.conftest import WEBHOOK_SECRET, alert
from tests.integration.process_fixtures import wait_healthy

ROOT = Path(__file__).parents[2]


def test_python_m_services_brain_serves_health_and_webhooks(service_env, amqp, tmp_path):
    from shared.db.migrate import upgrade

    upgrade(service_env["DATABASE_URL"])
    port = int(service_env["BRAIN_PORT"])
    log = (tmp_path / "brain.log").open("w+")
    process = subprocess.Popen([sys.executable, "-m", "services.brain"], cwd=tmp_path,
                               env=service_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        health = wait_healthy(port)
        assert health.json()["checks"] == {"rabbitmq": "ok", "redis": "ok", "db": "ok"}
        accepted = httpx.post(f"http://127.0.0.1:{port}/webhook", json=alert(), timeout=5)
        assert accepted.status_code == 202
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down cleanly, then re-raises the signal it caught.
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    log.seek(0)
    lines = [json.loads(line) for line in log if line.startswith("{")]
    accepted_line = next(line for line in lines if line["message"] == "signal accepted")
    assert accepted_line["service"] == "brain"
    assert accepted_line["correlation_id"] == accepted.json()["signal_id"]
    assert lines[-1]["message"].startswith("Finished server process")
    log.seek(0)
    assert WEBHOOK_SECRET not in log.read()


def test_supervisor_migrates_runs_and_restarts_a_dead_service(service_env, amqp, tmp_path):
    port = int(service_env["BRAIN_PORT"])
    log = (tmp_path / "run.log").open("w+")
    supervisor = subprocess.Popen([sys.executable, "-m", "services"], cwd=ROOT,
                                  env=service_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, timeout_s=60)
        brain_pid = _started_pids(log)[-1]
        os.kill(brain_pid, signal.SIGKILL)
        time.sleep(0.5)
        wait_healthy(port)
        assert len(_started_pids(log)) == 2, "BRAIN was not started again"
    finally:
        supervisor.send_signal(signal.SIGINT)
        returncode = supervisor.wait(timeout=30)
    assert returncode == 0
    log.seek(0)
    messages = [json.loads(line)["message"] for line in log if line.startswith("{")]
    assert "service exited; restarting" in messages
    assert "Phoenix 95 stopped" in messages


def _started_pids(log) -> list[int]:
    log.seek(0)
    return [
        record["pid"] for record in map(json.loads, (line for line in log if line.startswith("{")))
        if record.get("message") == "service started" and record.get("child") == "brain"
    ]


def test_make_run_creates_a_missing_vhost():
    from services.supervisor import ensure_vhost
    from shared.config import Settings

    vhost = f"/p95-missing-{os.getpid()}-{time.monotonic_ns()}"
    try:
        asyncio.run(ensure_vhost(Settings(_env_file=None, amqp_url=AMQP_URL, amqp_vhost=vhost)))
        listed = subprocess.run(["rabbitmqctl", "list_vhosts", "-q"], capture_output=True,
                                text=True, check=True, timeout=60).stdout.split()
        assert vhost in listed
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True,
                       timeout=60, check=False)
