"""The deployment files: docker-compose.yml, the image, .env.example, the broker's boot files.

There is no Docker engine here, so these tests check what can be checked without one: the
compose file parses and its services, ports, healthchecks and variables agree with the code,
no secret is written anywhere, and the broker's definitions writer produces a user RabbitMQ
can authenticate.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.brain.settings import BrainSettings
from services.execute.settings import ExecuteSettings
from services.notify.settings import NotifySettings
from services.risk.settings import RiskSettings
from shared.config import Settings, is_placeholder
from shared.messaging import topology
from shared.messaging.broker_definitions import HASHING_ALGORITHM, password_hash

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deployment" / "Dockerfile"
ENTRYPOINT = ROOT / "deployment" / "entrypoint.sh"
ENV_EXAMPLE = ROOT / ".env.example"
RABBITMQ_DIR = ROOT / "infrastructure" / "rabbitmq"

INFRA = ("rabbitmq", "redis", "postgres")
# The Phoenix 95 services that exist, with their settings (port field: `<name>_port`).
OURS: dict[str, type[Settings]] = {
    "brain": BrainSettings, "risk": RiskSettings, "execute": ExecuteSettings,
    "notify": NotifySettings}


def port_of(name: str) -> int:
    return OURS[name].model_fields[f"{name}_port"].default


each_service = pytest.mark.parametrize("name", list(OURS))
DEFINITIONS_SERVICE = "rabbitmq-definitions"
COMPOSE_ONLY_VARIABLES = ("POSTGRES_PASSWORD", "RABBITMQ_USER", "RABBITMQ_PASSWORD",
                          "GRAFANA_ADMIN_PASSWORD", "PHOENIX95_ALERT_KEY")
OBSERVABILITY = ("prometheus", "alertmanager", "grafana")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|_KEYS?$")
# `${VAR}`, `${VAR:?message}`, `${VAR?message}`: a value that only the environment supplies.
REQUIRED_VAR = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(:?\?[^}]*)?\}$")
INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::?([-?])([^}]*))?\}")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def argv(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else str(value).split()


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of each mount (short syntax `source:target[:mode]` or long syntax)."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume.get("source", "")
        else:
            source, target, *_ = str(volume).split(":")
            mounts[target] = source
    return mounts


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def one_shot_services(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services another one waits for with condition service_completed_successfully."""
    return {
        name
        for service in services.values()
        for name, condition in depends_on(service).items()
        if condition == "service_completed_successfully"
    }


def field_env_names(settings: type[Settings]) -> set[str]:
    return {name.upper() for name in settings.model_fields}


def env_example() -> dict[str, str]:
    """Variables of .env.example, set (`VAR=value`) or shown commented out (`# VAR=value`)."""
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def env_example_set() -> dict[str, str]:
    return {
        match.group(1): match.group(2)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if (match := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line.strip()))
    }


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (str(key), *strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [] if node is None else [str(node)]


# ------------------------------------------------------------------------------------------
# docker-compose.yml
# ------------------------------------------------------------------------------------------


def test_compose_has_the_infrastructure_and_our_services(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in (*INFRA, *OURS):
        assert name in services, f"docker-compose.yml has no service {name}"
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.13-management")
    assert services["redis"]["image"].split(":")[0] == "redis"
    assert services["postgres"]["image"] == "postgres:16"


def test_only_services_that_exist(services: dict[str, dict[str, Any]]) -> None:
    """A Phoenix 95 service in compose has its package; no placeholder for a later one."""
    for name, service in services.items():
        command = argv(service.get("command", []))
        if command[:2] == ["python", "-m"] and command[2].startswith("services."):
            package = command[2].removeprefix("services.")
            assert (ROOT / "services" / package / "__main__.py").is_file(), name
    allowed = {*INFRA, DEFINITIONS_SERVICE, *OURS, *OBSERVABILITY}
    assert set(services) <= allowed, f"services that do not exist yet: {set(services) - allowed}"


def test_our_services_build_the_one_image(services: dict[str, dict[str, Any]]) -> None:
    for name in (*OURS, DEFINITIONS_SERVICE):
        build = services[name]["build"]
        assert build["dockerfile"] == "deployment/Dockerfile", name
        assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        assert "image" not in services[name], f"{name}: an image name could be pulled instead"
    for name in OURS:
        assert argv(services[name]["command"]) == ["python", "-m", f"services.{name}"]


@each_service
def test_each_service_publishes_its_port(services: dict[str, dict[str, Any]], name: str) -> None:
    port = port_of(name)
    assert port == {"brain": 8100, "risk": 8101, "execute": 8102, "notify": 8103}[name]
    mappings = [str(p) for p in services[name]["ports"]]
    assert f"{port}:{port}" in mappings


@each_service
def test_healthcheck_asks_health_on_the_service_port(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    test = argv(services[name]["healthcheck"]["test"])
    assert test[0] in ("CMD", "CMD-SHELL")
    assert "curl" not in test and "wget" not in test, "the slim image has neither"
    assert test[1] == "python"
    urls = re.findall(r"https?://[^'\"\s]+", " ".join(test))
    assert urls, test
    url = urlsplit(urls[0])
    assert url.hostname in ("localhost", "127.0.0.1")
    assert url.port == port_of(name)
    assert url.path == "/health"


def test_brain_healthcheck_command_fails_when_nothing_answers(
    services: dict[str, dict[str, Any]],
) -> None:
    """The healthcheck's Python exits non-zero on a refused connection (nothing on a free port)."""
    code = argv(services["brain"]["healthcheck"]["test"])[3]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    code = code.replace(":8100/", f":{free_port}/")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert result.returncode != 0


def test_every_service_has_a_healthcheck_and_a_restart_policy(
    services: dict[str, dict[str, Any]],
) -> None:
    one_shot = one_shot_services(services)
    for name, service in services.items():
        assert "restart" in service, f"{name} has no restart policy"
        healthcheck = service.get("healthcheck")
        assert healthcheck, f"{name} has no healthcheck"
        if name in one_shot:
            # A job that runs to completion: never restarted, nothing to probe.
            assert service["restart"] == "no", name
            assert healthcheck.get("disable") is True, name
            continue
        assert service["restart"] in ("always", "unless-stopped", "on-failure"), name
        assert not healthcheck.get("disable"), f"{name} disables its healthcheck"
        test = argv(healthcheck["test"])
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    assert services["brain"]["restart"] == "unless-stopped"


@each_service
def test_services_wait_for_healthy_infrastructure(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    deps = depends_on(services[name])
    for infra in INFRA:
        assert deps.get(infra) == "service_healthy", f"{name} must wait for {infra}"


def test_redis_keeps_an_append_only_file(services: dict[str, dict[str, Any]]) -> None:
    command = argv(services["redis"]["command"])
    assert "--appendonly" in command
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "/data" in volume_mounts(services["redis"]), "the AOF must live on a volume"


def test_postgres_has_a_volume_and_pg_isready(services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    assert "/var/lib/postgresql/data" in volume_mounts(postgres)
    assert "pg_isready" in " ".join(argv(postgres["healthcheck"]["test"]))


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source in volume_mounts(service).values():
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


@each_service
def test_services_set_only_variables_they_read(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    unknown = set(environment(services[name])) - field_env_names(OURS[name])
    assert not unknown, f"compose sets variables {name} does not have: {unknown}"


@each_service
def test_compose_defaults_match_the_settings(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    """`VAR: ${VAR:-default}` must not silently change a default of the code."""
    fields = OURS[name].model_fields.items()
    defaults = {field_name.upper(): field.default for field_name, field in fields}
    for key, value in environment(services[name]).items():
        match = INTERPOLATION.fullmatch(value)
        if match and match.group(1) == key and match.group(2) == "-" and match.group(3):
            assert match.group(3) == str(defaults[key]), key


@each_service
def test_services_reach_the_compose_infrastructure(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    env = environment(services[name])
    postgres_env = environment(services["postgres"])

    database = urlsplit(INTERPOLATION.sub("x", env["DATABASE_URL"]))
    assert database.scheme == "postgresql+asyncpg"
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert database.username == postgres_env["POSTGRES_USER"]
    assert database.path == "/" + postgres_env["POSTGRES_DB"]

    assert env["AMQP_URL"].startswith("amqp://") and "@rabbitmq:5672/" in env["AMQP_URL"]
    definitions_env = environment(services[DEFINITIONS_SERVICE])
    for name in ("RABBITMQ_USER", "RABBITMQ_PASSWORD"):
        # The broker's user is the one the services connect as, from the same variables.
        assert INTERPOLATION.search(definitions_env[name]).group(1) == name
        assert "${" + name in env["AMQP_URL"]
    assert definitions_env["AMQP_VHOST"] == env["AMQP_VHOST"]

    assert urlsplit(env["REDIS_URL"]).hostname == "redis"


def test_no_literal_secret_in_compose(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_VAR.match(value) or re.fullmatch(r"\$\{[A-Z0-9_]+:?-\}", value), (
                    f"{name}: {key} must come from the environment (${{{key}:?...}}), "
                    f"not {value!r}"
                )
    for text in strings(compose):
        for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", text):
            assert REQUIRED_VAR.match(password), f"a password written in a URL: {text}"
    assert "guest" not in COMPOSE.read_text()


def test_every_compose_variable_is_in_env_example(compose: dict[str, Any]) -> None:
    documented = env_example()
    used = {m.group(1) for text in strings(compose) for m in INTERPOLATION.finditer(text)}
    assert used, "compose takes nothing from the environment?"
    assert not used - set(documented), f"missing from .env.example: {used - set(documented)}"


# ------------------------------------------------------------------------------------------
# .env.example
# ------------------------------------------------------------------------------------------


def test_env_example_lists_every_setting() -> None:
    documented = set(env_example())
    for settings in (Settings, *OURS.values()):
        missing = field_env_names(settings) - documented
        assert not missing, f"{settings.__name__} fields missing from .env.example: {missing}"
    for name in COMPOSE_ONLY_VARIABLES:
        assert name in documented, name


def test_env_example_comments_every_variable() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^#?\s*[A-Z][A-Z0-9_]*=", line.strip()):
            previous = lines[index - 1].strip()
            assert previous.startswith("#") and not re.match(
                r"^#\s*[A-Z][A-Z0-9_]*=", previous
            ), f"no one-line meaning above {line!r}"


@each_service
def test_env_example_gives_the_defaults(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    settings = OURS[name]
    for field in settings.model_fields:
        monkeypatch.delenv(field.upper(), raising=False)
    loaded = settings(_env_file=ENV_EXAMPLE)
    defaults = settings(_env_file=None)

    def plain(value: Any) -> Any:
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value.get_secret_value() if hasattr(value, "get_secret_value") else value

    for field in settings.model_fields:
        assert plain(getattr(loaded, field)) == plain(getattr(defaults, field)), field


def test_env_example_holds_no_secret() -> None:
    values = env_example()
    secrets = [name for name in values if SECRET_NAME.search(name)]
    assert {"WEBHOOK_SECRET", "PHOENIX95_API_KEYS", *COMPOSE_ONLY_VARIABLES} - {
        "RABBITMQ_USER"
    } <= set(secrets)
    for name in secrets:
        assert is_placeholder(values[name]), f".env.example gives {name} a value"


def test_per_service_variables_are_not_set_in_env_example() -> None:
    """Every service reads .env: a SERVICE_NAME (or a bare PORT) there would apply to all."""
    active = env_example_set()
    for name in ("SERVICE_NAME", "PORT", "HOST"):
        assert name not in active, f"{name} must stay commented out in .env.example"


# ------------------------------------------------------------------------------------------
# RabbitMQ: configuration, plugins, boot definitions
# ------------------------------------------------------------------------------------------


def rabbitmq_conf() -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (RABBITMQ_DIR / "rabbitmq.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, value = (part.strip() for part in line.split("=", 1))
            entries[key] = value
    return entries


def test_rabbitmq_mounts_its_configuration(services: dict[str, dict[str, Any]]) -> None:
    mounts = volume_mounts(services["rabbitmq"])
    assert mounts["/etc/rabbitmq/rabbitmq.conf"] == "./infrastructure/rabbitmq/rabbitmq.conf"
    assert mounts["/etc/rabbitmq/enabled_plugins"] == "./infrastructure/rabbitmq/enabled_plugins"
    assert "/var/lib/rabbitmq" in mounts


def test_load_definitions_is_the_file_the_writer_writes(
    services: dict[str, dict[str, Any]],
) -> None:
    """rabbitmq.conf loads, from a volume, the file the one-shot writer puts in that volume."""
    load = Path(rabbitmq_conf()["load_definitions"])
    writer = services[DEFINITIONS_SERVICE]
    command = argv(writer.get("entrypoint", [])) + argv(writer.get("command", []))
    assert command[:3] == ["python", "-m", "shared.messaging.broker_definitions"]
    outfile = Path(command[3])

    writer_mounts = volume_mounts(writer)
    volume = writer_mounts[str(outfile.parent)]
    broker_mounts = {
        source: target for target, source in volume_mounts(services["rabbitmq"]).items()
    }
    assert broker_mounts.get(volume), f"the broker does not mount volume {volume}"
    assert load == Path(broker_mounts[volume]) / outfile.name

    assert depends_on(services["rabbitmq"])[DEFINITIONS_SERVICE] == (
        "service_completed_successfully"
    )


def test_enabled_plugins() -> None:
    text = (RABBITMQ_DIR / "enabled_plugins").read_text().strip()
    match = re.fullmatch(r"\[([a-z_,\s]*)\]\.", text)
    assert match, f"not an Erlang list term: {text!r}"
    plugins = {p.strip() for p in match.group(1).split(",") if p.strip()}
    assert {"rabbitmq_management", "rabbitmq_prometheus"} <= plugins


def test_static_definitions_are_the_topology_only() -> None:
    static = json.loads((RABBITMQ_DIR / "definitions.json").read_text())
    assert static == topology.definitions()
    assert "users" not in static and "permissions" not in static


def test_password_hash_matches_rabbitmq_documented_example() -> None:
    # The worked example of RabbitMQ's "Credentials and Passwords" guide: salt 908DC60A, test12.
    salt = bytes.fromhex("908DC60A")
    assert password_hash("test12", salt) == "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"


def project_env(**extra: str) -> dict[str, str]:
    """This environment, importing the project from this checkout (as the image does installed)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "AMQP_"))}
    environ.pop("DATABASE_URL", None)
    path = os.environ.get("PYTHONPATH")
    environ["PYTHONPATH"] = f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    return environ | extra


def run_writer(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = project_env(**env)
    return subprocess.run(
        [sys.executable, "-m", "shared.messaging.broker_definitions", str(tmp_path / "out.json")],
        cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60,
    )


def verifies(stored_hash: str, password: str) -> bool:
    raw = base64.b64decode(stored_hash)
    salt, digest = raw[:4], raw[4:]
    return len(raw) == 36 and hashlib.sha256(salt + password.encode("utf-8")).digest() == digest


def test_writer_adds_a_user_to_the_topology(tmp_path: Path) -> None:
    password = "S3cret-pässword-for-the-test"
    result = run_writer(
        tmp_path, RABBITMQ_USER="p95user", RABBITMQ_PASSWORD=password, AMQP_VHOST="/p95vhost"
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out.json"
    text = out.read_text()
    assert password not in text and password not in result.stdout + result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o644, "the broker reads it as another user"

    written = json.loads(text)
    users = written.pop("users")
    permissions = written.pop("permissions")
    assert written == topology.definitions("/p95vhost")

    assert len(users) == 1
    user = users[0]
    assert user["name"] == "p95user"
    assert user["hashing_algorithm"] == HASHING_ALGORITHM == "rabbit_password_hashing_sha256"
    assert "password" not in user
    assert verifies(user["password_hash"], password)
    assert not verifies(user["password_hash"], password + "x")
    assert permissions == [
        {"user": "p95user", "vhost": "/p95vhost", "configure": ".*", "write": ".*", "read": ".*"}
    ]


def test_writer_salts_every_run(tmp_path: Path) -> None:
    hashes = set()
    for _ in range(2):
        assert run_writer(tmp_path, RABBITMQ_PASSWORD="same-password").returncode == 0
        written = json.loads((tmp_path / "out.json").read_text())
        assert written["vhosts"] == [{"name": Settings.model_fields["amqp_vhost"].default}]
        assert written["users"][0]["name"] == "phoenix95"
        hashes.add(written["users"][0]["password_hash"])
    assert len(hashes) == 2


@pytest.mark.parametrize("password", [None, "", "change-me"])
def test_writer_refuses_a_missing_or_placeholder_password(
    tmp_path: Path, password: str | None
) -> None:
    env = {} if password is None else {"RABBITMQ_PASSWORD": password}
    result = run_writer(tmp_path, **env)
    assert result.returncode != 0
    assert "RABBITMQ_PASSWORD" in result.stderr
    assert not (tmp_path / "out.json").exists()


# ------------------------------------------------------------------------------------------
# the image
# ------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_dockerfile_builds_a_non_root_python_image() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [args for op, args in instructions if op == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "pip install" in runs
    assert "[dev]" not in runs, "no dev extras in the image"


def test_dockerfile_has_no_secrets() -> None:
    for op, args in dockerfile_instructions():
        if op in ("ENV", "ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=", args) or args.split()[:1]:
                assert not SECRET_NAME.search(name.upper()), f"{op} {args}"
        if op in ("COPY", "ADD"):
            sources = [s for s in args.split()[:-1] if not s.startswith("--")]
            assert ".env" not in sources and "." not in sources, f"{op} {args}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for name in (".env", ".venv", ".git", "var"):
        assert name in ignored, f".dockerignore must exclude {name}"


def test_dockerfile_runs_brain_after_migrations() -> None:
    instructions = dict(dockerfile_instructions())
    assert json.loads(instructions["CMD"]) == ["python", "-m", "services.brain"]
    entrypoint = json.loads(instructions["ENTRYPOINT"])
    copies = dict(args.split() for op, args in dockerfile_instructions() if op == "COPY")
    installed = Path(copies["deployment/entrypoint.sh"])
    assert entrypoint[0] in (str(installed), installed.name), "the entrypoint is not ours"
    assert installed.parent == Path("/usr/local/bin") or installed.is_absolute()

    script = ENTRYPOINT.read_text()
    assert script.startswith("#!/bin/sh")
    migrate = script.index("python -m shared.db.migrate")
    assert migrate < script.index('exec "$@"')


def test_entrypoint_migrates_then_runs_the_command(tmp_path: Path) -> None:
    """Run the script itself: the database has its tables before the command starts."""
    database = tmp_path / "phoenix95.db"
    check = (
        "import sqlite3, sys; "
        "rows = sqlite3.connect(sys.argv[1]).execute("
        "\"select name from sqlite_master where type='table'\"); "
        "sys.exit(0 if {'alembic_version', 'signals'} <= {r[0] for r in rows} else 3)"
    )
    env = project_env(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        DATABASE_URL=f"sqlite+aiosqlite:///{database}",
    )
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "python", "-c", check, str(database)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
