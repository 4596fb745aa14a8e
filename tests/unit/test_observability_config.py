"""Prometheus, Alertmanager and Grafana files under deployment/ (notify.md, "Grafana and
Prometheus").

No Prometheus, Alertmanager or Grafana runs here, so these tests check what can be checked
without them: the files parse; Prometheus scrapes the four services and RabbitMQ, loads the
rules and alerts Alertmanager; every rule is complete; Alertmanager sends everything to
NOTIFY's POST /alert without a secret in the file; the dashboards are Grafana provisioning
JSON on the provisioned datasource; and `promtool` (Debian's `prometheus`, which .ci/run
installs) accepts the config and the rules. That every metric name a rule or a panel uses is
served by the running services is tests/integration/test_metrics_live.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.brain.settings import BrainSettings
from services.execute.settings import ExecuteSettings
from services.notify.settings import NotifySettings
from services.risk.settings import RiskSettings
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = ROOT / "deployment"
PROMETHEUS = DEPLOYMENT / "prometheus" / "prometheus.yml"
RULES = DEPLOYMENT / "prometheus" / "rules.yml"
ALERTMANAGER = DEPLOYMENT / "alertmanager" / "alertmanager.yml"
DATASOURCES = DEPLOYMENT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DEPLOYMENT / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARDS = DEPLOYMENT / "grafana" / "dashboards"
DASHBOARD_FILES = ("trading.json", "pipeline.json")
YAML_FILES = (PROMETHEUS, RULES, ALERTMANAGER, DATASOURCES, DASHBOARD_PROVIDERS)

DATASOURCE_UID = "phoenix95-prometheus"
# The services and their ports (the spec); the compose service name is the scrape host.
SERVICE_PORTS = {"brain": 8100, "risk": 8101, "execute": 8102, "notify": 8103}
SETTINGS: dict[str, type[Settings]] = {
    "brain": BrainSettings, "risk": RiskSettings, "execute": ExecuteSettings,
    "notify": NotifySettings}
RABBITMQ_TARGET = "rabbitmq:15692"  # infrastructure/rabbitmq/rabbitmq.conf, prometheus.tcp.port
ALERTMANAGER_TARGET = "alertmanager:9093"
NOTIFY_ALERT = ("notify", 8103, "/alert")

# The six alerts notify.md asks for, with the metric each one must watch.
REQUIRED_ALERTS = {
    "ServiceDown": "up",
    "DeadLetter": "phoenix95_dead_letters_total",
    "LiquidationCritical": "phoenix95_distance_to_liquidation_ratio",
    "PipelineLatencyHigh": "phoenix95_pipeline_latency_seconds_bucket",
    "StalePrices": "phoenix95_stale_price_symbols",
    "TradingHalted": "phoenix95_trading_state",
}
SEVERITIES = {"critical", "warning", "info"}
# Prometheus's <duration>: 1d, 1h30m, 5m, 10s, 0s.
DURATION = re.compile(r"^(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?$")
PHOENIX95_METRIC = re.compile(r"phoenix95_[a-z0-9_]+")
PROCESS_METRIC = re.compile(r"\bprocess_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# What each dashboard must show (notify.md): a metric name per item.
TRADING_METRICS = (
    "phoenix95_equity_usdt", "phoenix95_realized_pnl_usdt_total",
    "phoenix95_unrealized_pnl_usdt", "phoenix95_positions_open",
    "phoenix95_distance_to_liquidation_ratio", "phoenix95_signals_total",
    "phoenix95_risk_verdicts_total", "phoenix95_orders_total",
)
PIPELINE_METRICS = (
    "phoenix95_http_requests_total", "phoenix95_http_request_duration_seconds_bucket",
    "rabbitmq_queue_messages_ready", "phoenix95_dead_letters_total",
    "phoenix95_messages_total", "process_resident_memory_bytes",
)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def prometheus() -> dict[str, Any]:
    return load_yaml(PROMETHEUS)


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def alertmanager() -> dict[str, Any]:
    return load_yaml(ALERTMANAGER)


def load_dashboard(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(dashboard) if panel.get("type") != "row"
            for target in panel["targets"]]


def all_exprs() -> dict[str, list[str]]:
    """Every PromQL expression of the rules and the dashboards, by file."""
    groups = load_yaml(RULES)["groups"]
    exprs = {RULES.name: [str(rule["expr"]) for group in groups for rule in group["rules"]]}
    for name in DASHBOARD_FILES:
        exprs[name] = dashboard_exprs(load_dashboard(name))
    return exprs


def scrape_jobs(prometheus: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(job, target, metrics_path) for every static target."""
    return [(job["job_name"], target, job.get("metrics_path", "/metrics"))
            for job in prometheus["scrape_configs"]
            for static in job.get("static_configs", [])
            for target in static["targets"]]


def promql_problems(expr: str) -> list[str]:
    """What is structurally wrong with a PromQL expression: unbalanced brackets or quotes, a
    range selector with a bad duration, an empty expression."""
    problems = []
    if not expr.strip():
        return ["empty expression"]
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for char in expr:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in "\"'`":
            quote = char
        elif char in "([{":
            stack.append(char)
        elif char in pairs:
            if not stack or stack.pop() != pairs[char]:
                problems.append(f"unbalanced {char!r}")
                break
    if quote:
        problems.append(f"unterminated {quote} string")
    if stack:
        problems.append(f"unclosed {stack[-1]!r}")
    # Strip strings, then every [...] must hold a duration or a Grafana range variable.
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    for window in re.findall(r"\[([^\]]*)\]", unquoted):
        if window.startswith("$__"):
            continue
        duration = window.split(":")[0]
        if not duration or not DURATION.match(duration):
            problems.append(f"bad range [{window}]")
    return problems


# ------------------------------------------------------------------------------------------
# Prometheus
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda path: path.name)
def test_yaml_files_parse(path: Path) -> None:
    assert isinstance(load_yaml(path), dict)


def test_service_ports_match_the_settings() -> None:
    for name, settings in SETTINGS.items():
        assert settings.model_fields[f"{name}_port"].default == SERVICE_PORTS[name]


@pytest.mark.parametrize("name", list(SERVICE_PORTS))
def test_prometheus_scrapes_each_service(prometheus: dict[str, Any], name: str) -> None:
    jobs = [job for job in scrape_jobs(prometheus) if job[1].split(":")[0] == name]
    assert jobs == [(name, f"{name}:{SERVICE_PORTS[name]}", "/metrics")]


def test_prometheus_scrapes_rabbitmq_per_queue(prometheus: dict[str, Any]) -> None:
    """Per-object: the aggregated /metrics has no `queue` label, the queue-depth panel needs it."""
    jobs = [job for job in scrape_jobs(prometheus) if job[1] == RABBITMQ_TARGET]
    assert jobs == [("rabbitmq", RABBITMQ_TARGET, "/metrics/per-object")]


def test_job_names_are_unique(prometheus: dict[str, Any]) -> None:
    names = [job["job_name"] for job in prometheus["scrape_configs"]]
    assert len(names) == len(set(names))


def test_prometheus_loads_the_rules_and_alerts_alertmanager(prometheus: dict[str, Any]) -> None:
    assert [(PROMETHEUS.parent / path).resolve() for path in prometheus["rule_files"]] == [
        RULES.resolve()]
    targets = [target for manager in prometheus["alerting"]["alertmanagers"]
               for static in manager["static_configs"] for target in static["targets"]]
    assert targets == [ALERTMANAGER_TARGET]


def test_global_intervals_are_durations(prometheus: dict[str, Any]) -> None:
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval"):
        assert DURATION.match(prometheus["global"][key]), key


# ------------------------------------------------------------------------------------------
# rules
# ------------------------------------------------------------------------------------------


def test_every_rule_is_complete(rules: list[dict[str, Any]]) -> None:
    assert rules
    for rule in rules:
        name = rule.get("alert")
        assert name, f"not an alerting rule: {rule}"
        assert str(rule.get("expr", "")).strip(), name
        assert "for" in rule and DURATION.match(str(rule["for"])), name
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        assert str(rule.get("annotations", {}).get("summary", "")).strip(), name
        assert not promql_problems(str(rule["expr"])), (name, promql_problems(str(rule["expr"])))


def test_alert_names_are_unique(rules: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(("alert", "metric"), REQUIRED_ALERTS.items())
def test_the_spec_alerts_exist(rules: list[dict[str, Any]], alert: str, metric: str) -> None:
    by_name = {rule["alert"]: rule for rule in rules}
    assert alert in by_name
    assert re.search(rf"\b{metric}\b", by_name[alert]["expr"])


def test_spec_thresholds(rules: list[dict[str, Any]]) -> None:
    expr = {rule["alert"]: " ".join(str(rule["expr"]).split()) for rule in rules}
    assert re.search(r"\bup == 0\b", expr["ServiceDown"])
    assert "histogram_quantile(0.99," in expr["PipelineLatencyHigh"]
    assert expr["PipelineLatencyHigh"].endswith("> 1")
    assert "phoenix95_trading_state == 2" in expr["TradingHalted"]
    assert re.search(r"phoenix95_distance_to_liquidation_ratio < 0\.0\d+$",
                     expr["LiquidationCritical"])
    assert "increase(phoenix95_dead_letters_total[" in expr["DeadLetter"]


# ------------------------------------------------------------------------------------------
# Alertmanager
# ------------------------------------------------------------------------------------------


def route_receivers(route: dict[str, Any]) -> Iterator[str]:
    if "receiver" in route:
        yield route["receiver"]
    for child in route.get("routes", []):
        yield from route_receivers(child)


def test_alertmanager_sends_every_alert_to_notify(alertmanager: dict[str, Any]) -> None:
    route = alertmanager["route"]
    assert route["receiver"]
    assert route.get("group_by"), "alerts must be grouped"
    assert "matchers" not in route and "match" not in route, "the root route matches all"
    receivers = {receiver["name"]: receiver for receiver in alertmanager["receivers"]}
    used = set(route_receivers(route))
    assert used <= set(receivers)
    for name in used:
        receiver = receivers[name]
        assert set(receiver) == {"name", "webhook_configs"}, f"{name}: webhooks only"
        for webhook in receiver["webhook_configs"]:
            url = urlsplit(webhook["url"])
            assert (url.hostname, url.port, url.path) == NOTIFY_ALERT
            assert url.scheme == "http"
            assert webhook.get("send_resolved") is True


def test_alertmanager_key_comes_from_a_file(alertmanager: dict[str, Any]) -> None:
    """No secret in the file: the key travels as a bearer token read from a mounted secret."""
    for receiver in alertmanager["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            url = urlsplit(webhook["url"])
            assert not url.query and not url.password and not url.username
            authorization = webhook["http_config"]["authorization"]
            assert authorization.get("type", "Bearer") == "Bearer"
            assert "credentials" not in authorization
            assert authorization["credentials_file"].startswith("/run/secrets/")


def test_alertmanager_durations(alertmanager: dict[str, Any]) -> None:
    routes = [alertmanager["route"], *alertmanager["route"].get("routes", [])]
    for route in routes:
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                assert DURATION.match(route[key]), key


# ------------------------------------------------------------------------------------------
# Grafana
# ------------------------------------------------------------------------------------------


def test_grafana_datasource_is_the_prometheus_service() -> None:
    provisioning = load_yaml(DATASOURCES)
    assert provisioning["apiVersion"] == 1
    [datasource] = provisioning["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["access"] == "proxy"
    assert datasource.get("isDefault") is True


def test_grafana_dashboard_provider_loads_files() -> None:
    provisioning = load_yaml(DASHBOARD_PROVIDERS)
    assert provisioning["apiVersion"] == 1
    [provider] = provisioning["providers"]
    assert provider["type"] == "file"
    assert provider["name"]
    assert Path(provider["options"]["path"]).is_absolute()


def test_dashboard_files_are_the_two_dashboards() -> None:
    assert sorted(path.name for path in DASHBOARDS.glob("*.json")) == sorted(DASHBOARD_FILES)


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_is_grafana_provisioning_json(name: str) -> None:
    dashboard = load_dashboard(name)
    assert isinstance(dashboard["title"], str) and dashboard["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard.get("id") is None, "a provisioned dashboard carries no database id"
    assert dashboard["panels"]
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        title = panel.get("title")
        assert title and panel.get("type"), panel
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), title
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, title
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, title
        assert panel["targets"], f"{title}: no targets"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == DATASOURCE_UID
            assert str(target.get("expr", "")).strip(), f"{title}: target without expr"
            assert not promql_problems(target["expr"]), (title, promql_problems(target["expr"]))


def test_dashboard_uids_differ() -> None:
    uids = [load_dashboard(name)["uid"] for name in DASHBOARD_FILES]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize(("name", "required"), [
    ("trading.json", TRADING_METRICS), ("pipeline.json", PIPELINE_METRICS)])
def test_dashboard_shows_what_the_spec_asks(name: str, required: tuple[str, ...]) -> None:
    used = " ".join(dashboard_exprs(load_dashboard(name)))
    assert [metric for metric in required if not re.search(rf"\b{metric}\b", used)] == []


# ------------------------------------------------------------------------------------------
# metric names used by the rules and the dashboards
# ------------------------------------------------------------------------------------------


def used_names(pattern: re.Pattern[str]) -> dict[str, set[str]]:
    """Metric name -> the files using it."""
    found: dict[str, set[str]] = {}
    for source, exprs in all_exprs().items():
        for expr in exprs:
            for name in pattern.findall(expr):
                found.setdefault(name, set()).add(source)
    return found


def family_of(sample: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


# ------------------------------------------------------------------------------------------
# promtool and amtool, when installed
# ------------------------------------------------------------------------------------------


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_promql_balances() -> None:
    for source, exprs in all_exprs().items():
        for expr in exprs:
            assert not promql_problems(expr), (source, expr, promql_problems(expr))


def test_promtool_accepts_config_and_rules() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's `prometheus` (.ci/run does)"
    config = run_tool(promtool, "check", "config", str(PROMETHEUS))
    assert config.returncode == 0, config.stdout + config.stderr
    checked = run_tool(promtool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_amtool_accepts_config() -> None:
    """amtool (Debian package `prometheus-alertmanager`) when installed; otherwise the
    Alertmanager tests above are the check."""
    amtool = shutil.which("amtool")
    alertmanager = load_yaml(ALERTMANAGER)
    assert alertmanager["receivers"] and alertmanager["route"]
    if amtool is None:
        return
    checked = run_tool(amtool, "check-config", str(ALERTMANAGER))
    assert checked.returncode == 0, checked.stdout + checked.stderr
