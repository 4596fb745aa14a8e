"""Every metric a Prometheus rule or a Grafana panel uses is on the live /metrics of the
running services: the four started as their own processes by the supervisor (`make run`)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.process_fixtures import SERVICE_NAMES, port_of, wait_healthy
from tests.unit.test_observability_config import (
    PHOENIX95_METRIC,
    PROCESS_METRIC,
    family_of,
    used_names,
)

ROOT = Path(__file__).parents[2]

# notify.md, "Metrics": at least these, across the four services.
SPEC_METRICS = (
    "phoenix95_signals_total", "phoenix95_webhook_requests_total", "phoenix95_signal_score",
    "phoenix95_risk_verdicts_total", "phoenix95_orders_total", "phoenix95_positions_open",
    "phoenix95_equity_usdt", "phoenix95_unrealized_pnl_usdt",
    "phoenix95_realized_pnl_usdt_total", "phoenix95_distance_to_liquidation_ratio",
    "phoenix95_pipeline_latency_seconds", "phoenix95_messages_total",
    "phoenix95_dead_letters_total", "phoenix95_telegram_messages_total",
    "phoenix95_trading_state", "phoenix95_http_requests_total",
    "phoenix95_http_request_duration_seconds",
)


def family_names(exposition: str) -> set[str]:
    """Family names as Prometheus queries them: a counter as <name>_total. A family with
    labels and no sample yet still counts: its HELP and TYPE lines are served."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


@pytest.fixture
def live_metrics(service_env, amqp, tmp_path) -> Iterator[dict[str, set[str]]]:
    """Service -> the metric families on its /metrics."""
    log = (tmp_path / "run.log").open("w+")
    supervisor = subprocess.Popen([sys.executable, "-m", "services"], cwd=ROOT,
                                  env=service_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for name in SERVICE_NAMES:
            wait_healthy(port_of(service_env, name), timeout_s=60)
        yield {name: family_names(httpx.get(
            f"http://127.0.0.1:{port_of(service_env, name)}/metrics", timeout=5).text)
            for name in SERVICE_NAMES}
    finally:
        supervisor.send_signal(signal.SIGINT)
        supervisor.wait(timeout=30)


def test_every_metric_used_or_specified_is_served_live(live_metrics):
    served = set().union(*live_metrics.values())
    used = used_names(PHOENIX95_METRIC) | used_names(PROCESS_METRIC)
    assert len(used) > 20  # the rules and both dashboards were read
    missing = {name: sorted(files) for name, files in used.items()
               if family_of(name) not in served}
    assert missing == {}, "used in a rule or a dashboard, served by no running service"
    assert [name for name in SPEC_METRICS if name not in served] == []
    for name, families in live_metrics.items():
        # Every service: its HTTP requests and its memory, per notify.md and the Pipeline board.
        assert {"phoenix95_http_requests_total", "phoenix95_http_request_duration_seconds",
                "process_resident_memory_bytes"} <= families, name
