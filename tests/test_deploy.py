"""The deployment files (docker-compose.yml, Dockerfile, deploy/archiver.env.example) checked
against the code they deploy: Settings fields, CLI commands and health routes.

Docker does not run here, so the files are parsed and compared, and the receiver's healthcheck
command is run against a local HTTP server.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]  # PyYAML ships no type stubs
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from archiver.cli import build_parser
from core.config import Settings, load_settings
from core.errors import ConfigError
from receiver.health import health_routes, ops_routes

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / "deploy" / "archiver.env.example"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
DOCKERIGNORE = ROOT / ".dockerignore"

ARCHIVER_SERVICES = ("migrate", "receiver", "worker")
LONG_RUNNING = ("postgres", "redis", "receiver", "worker")
SETTINGS_NAMES = {name.upper() for name in Settings.model_fields}
SECRET_NAMES = {
    name.upper()
    for name, field in Settings.model_fields.items()
    if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
}
INTERPOLATION = re.compile(r"\$\{[^}]*\}")
ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
# Environment variables of the image that are Python's or pip's, not the archiver's.
RUNTIME_ENV = {
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of compose's forms (mapping or KEY=value list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def interpolated(value: str) -> str:
    """`value` as compose would hand it over, with every ${...} replaced by a stand-in."""
    return INTERPOLATION.sub("stand-in", value)


def env_example() -> tuple[dict[str, str], set[str]]:
    """The example's KEY=value lines that are set, and every name it documents (set or not)."""
    set_values: dict[str, str] = {}
    documented: set[str] = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match is None:
            continue
        commented, name, value = match.groups()
        documented.add(name)
        if not commented:
            set_values[name] = value
    return set_values, documented


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last build stage: what the image actually runs."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def dockerfile_list(keyword: str) -> list[str]:
    """The exec-form (JSON) arguments of the final stage's last ENTRYPOINT or CMD."""
    values = [rest for key, rest in final_stage() if key == keyword]
    assert values, f"the Dockerfile has no {keyword}"
    parsed: list[str] = json.loads(values[-1])
    return parsed


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def argv_of(service: dict[str, Any]) -> list[str]:
    """The container's argv: the service's entrypoint and command over the image's."""
    entrypoint = service.get("entrypoint", dockerfile_list("ENTRYPOINT"))
    command = service.get("command", dockerfile_list("CMD"))
    as_list = [
        shlex.split(part) if isinstance(part, str) else part for part in (entrypoint, command)
    ]
    return [*as_list[0], *as_list[1]]


def test_compose_has_the_services(services: dict[str, dict[str, Any]]) -> None:
    """docker-compose.yml parses and defines postgres, redis, migrate, receiver and worker."""
    assert {"postgres", "redis", *ARCHIVER_SERVICES} <= set(services)


def test_postgres_is_16_on_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """PostgreSQL 16 keeps its data on a named volume and is checked with pg_isready."""
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_redis_is_7_with_aof_on_a_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """Redis 7 runs with the append-only file on a named volume, checked with redis-cli ping."""
    redis = services["redis"]
    assert redis["image"] == "redis:7"
    assert redis["command"][:3] == ["redis-server", "--appendonly", "yes"]
    assert redis["volumes"][0].split(":")[0] in compose["volumes"]
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


@pytest.mark.parametrize("name", ARCHIVER_SERVICES)
def test_archiver_services_read_the_env_file(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    """Every archiver container takes its settings from deploy/archiver.env (from the example)."""
    env_file = services[name]["env_file"]
    assert env_file == "deploy/archiver.env"
    assert (ROOT / f"{env_file}.example").is_file()


@pytest.mark.parametrize("name", ARCHIVER_SERVICES)
def test_compose_sets_only_settings(services: dict[str, dict[str, Any]], name: str) -> None:
    """Each variable compose gives an archiver container is a field of Settings."""
    assert set(environment(services[name])) <= SETTINGS_NAMES


def test_env_example_names_are_settings() -> None:
    """Every variable the env example sets or documents is a field of Settings."""
    _, documented = env_example()
    assert documented <= SETTINGS_NAMES, documented - SETTINGS_NAMES


def test_env_example_documents_every_setting() -> None:
    """Every Settings field appears in the env example, so none is undocumented."""
    _, documented = env_example()
    assert documented >= SETTINGS_NAMES, SETTINGS_NAMES - documented


def test_env_example_as_shipped_refuses_to_receive() -> None:
    """The example's values are valid settings, but its empty secrets stop the receiver."""
    set_values, _ = env_example()
    assert set_values["META_APP_SECRET"] == ""
    settings = load_settings(**set_values)
    with pytest.raises(ConfigError, match="META_APP_SECRET and META_VERIFY_TOKEN"):
        settings.require_receiver_secrets()


def test_stores_point_at_compose_services(services: dict[str, dict[str, Any]]) -> None:
    """DATABASE_URL and REDIS_URL name the postgres and redis services (psycopg 3 for SQL)."""
    for name in ARCHIVER_SERVICES:
        env = {key: interpolated(value) for key, value in environment(services[name]).items()}
        settings = load_settings(database_url=env["DATABASE_URL"], redis_url=env["REDIS_URL"])
        database = make_url(settings.database_url)
        assert (database.drivername, database.host) == ("postgresql+psycopg", "postgres")
        assert make_url(env["REDIS_URL"]).host == "redis"


@pytest.mark.parametrize(
    ("name", "command"), [("migrate", "db"), ("receiver", "serve"), ("worker", "worker")]
)
def test_compose_commands_exist_in_the_cli(
    services: dict[str, dict[str, Any]], name: str, command: str
) -> None:
    """Each archiver service runs `archiver <command>` that the CLI parses without exiting."""
    argv = argv_of(services[name])
    assert argv[0] == "archiver"
    args = build_parser().parse_args(argv[1:])
    assert args.command == command
    assert callable(args.handler)


def test_dockerfile_default_command_exists_in_the_cli() -> None:
    """The image's ENTRYPOINT is `archiver` and its default CMD is a command the CLI parses."""
    assert dockerfile_list("ENTRYPOINT") == ["archiver"]
    args = build_parser().parse_args(dockerfile_list("CMD"))
    assert callable(args.handler)


def test_receiver_listens_on_its_published_port(services: dict[str, dict[str, Any]]) -> None:
    """The receiver listens on all interfaces, on the container port that compose publishes."""
    receiver = services["receiver"]
    args = build_parser().parse_args(argv_of(receiver)[1:])
    assert args.host == "0.0.0.0"
    assert [str(port).split(":")[-1] for port in receiver["ports"]] == [str(args.port)]


def test_receiver_healthcheck_hits_readyz(services: dict[str, dict[str, Any]]) -> None:
    """The receiver's healthcheck requests /readyz on its own port, a route the receiver has."""
    receiver = services["receiver"]
    check = " ".join(receiver["healthcheck"]["test"])
    port = build_parser().parse_args(argv_of(receiver)[1:]).port
    assert f"http://127.0.0.1:{port}/readyz" in check
    assert "/readyz" in paths(health_routes())


def paths(routes: list[Any]) -> set[str]:
    return {getattr(route, "path", "") for route in routes}


def test_metrics_stay_off_the_published_port(services: dict[str, dict[str, Any]]) -> None:
    """The ops listener's port is exposed on the compose network, never published; the
    Prometheus example scrapes it there, at a path that only the ops listener serves."""
    receiver = services["receiver"]
    env = environment(receiver)
    ops_port = env["METRICS_PORT"]
    assert env["METRICS_HOST"] == "0.0.0.0"
    assert ops_port not in [str(port).split(":")[-1] for port in receiver["ports"]]
    assert [str(port) for port in receiver["expose"]] == [ops_port]
    scrape = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == [f"receiver:{ops_port}"]
    assert scrape["metrics_path"] in paths(ops_routes()) - paths(health_routes())


def test_each_worker_is_scraped_on_its_own_port(services: dict[str, dict[str, Any]]) -> None:
    """Every worker replica serves /metrics on WORKER_METRICS_PORT, exposed on the compose
    network and never published; the Prometheus example finds each replica by the service
    name on that port, and loads the alert rules that sit beside it."""
    worker = services["worker"]
    env = environment(worker)
    port = env["WORKER_METRICS_PORT"]
    assert env["WORKER_METRICS_HOST"] == "0.0.0.0"
    assert [str(exposed) for exposed in worker["expose"]] == [port]
    config = yaml.safe_load(PROMETHEUS.read_text())
    scrape = next(job for job in config["scrape_configs"] if job["job_name"] == "archiver-worker")
    assert scrape["dns_sd_configs"] == [{"names": ["worker"], "type": "A", "port": int(port)}]
    assert scrape["metrics_path"] == "/metrics"
    assert all((PROMETHEUS.parent / rules).is_file() for rules in config["rule_files"])


class _Readiness(BaseHTTPRequestHandler):
    status: ClassVar[int] = 200
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def readiness_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Readiness)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_receiver_healthcheck_fails_on_503(
    services: dict[str, dict[str, Any]],
    readiness_server: ThreadingHTTPServer,
    status: int,
    healthy: bool,
) -> None:
    """The healthcheck command exits 0 for a ready receiver and non-zero for its 503."""
    test = services["receiver"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    port = readiness_server.server_address[1]
    argv = [arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in test[2:]]
    _Readiness.status, _Readiness.paths = status, []
    done = subprocess.run([sys.executable, *argv], capture_output=True, timeout=30, check=False)
    assert (done.returncode == 0) is healthy
    assert _Readiness.paths == ["/readyz"]


def test_receiver_and_workers_wait_for_migrations(services: dict[str, dict[str, Any]]) -> None:
    """Migrations wait for a healthy PostgreSQL; receiver and workers for migrations and Redis."""
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("receiver", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"


def test_workers_can_scale(services: dict[str, dict[str, Any]]) -> None:
    """Workers have no container_name and no ports, so `--scale worker=3` can run three."""
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_restart(services: dict[str, dict[str, Any]], name: str) -> None:
    """Long-running services come back after a crash or a reboot, unless stopped."""
    assert services[name]["restart"] == "unless-stopped"


def test_migrations_run_once(services: dict[str, dict[str, Any]]) -> None:
    """The migration container is one-shot: it is never restarted once it has succeeded."""
    assert services["migrate"].get("restart", "no") == "no"


def test_compose_sets_no_secret_values(services: dict[str, dict[str, Any]]) -> None:
    """Meta secrets come only from the env file; a password only as a ${...} variable."""
    for name in ARCHIVER_SERVICES:
        assert not SECRET_NAMES & set(environment(services[name]))
    for service in services.values():
        for key, value in environment(service).items():
            if re.search("SECRET|TOKEN|PASSWORD", key):
                assert INTERPOLATION.fullmatch(value), f"{key} is set in docker-compose.yml"
        for key, value in environment(service).items():
            if key.endswith("_URL") and "@" in value:
                password = value.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
                assert INTERPOLATION.fullmatch(password), f"{key} has a password in the file"


def test_env_example_holds_no_secret_values() -> None:
    """The example leaves every secret it sets empty, and sets none of them by placeholder."""
    set_values, _ = env_example()
    assert SECRET_NAMES, "Settings has SecretStr fields"
    assert all(set_values[name] == "" for name in SECRET_NAMES & set(set_values))


def test_dockerfile_runs_slim_python_311_as_a_user() -> None:
    """The image is python:3.11-slim and runs as a named user, not root."""
    stage = final_stage()
    assert stage[0] == ("FROM", "python:3.11-slim")
    users = [rest.split(":")[0] for keyword, rest in stage if keyword == "USER"]
    assert users, "the Dockerfile sets no USER"
    assert users[-1] not in {"root", "0"}


def test_dockerfile_installs_from_pyproject_without_extras() -> None:
    """The project is installed with `pip install .` from pyproject.toml, without test extras."""
    instructions = dockerfile_instructions()
    copies = " ".join(rest for keyword, rest in instructions if keyword == "COPY")
    assert "pyproject.toml" in copies
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    assert any(re.search(r"pip install \.(\s|$)", run) for run in runs)
    assert not any("[test]" in run or "requirements" in run for run in runs)


def test_dockerfile_env_is_unbuffered_and_secret_free() -> None:
    """The image sets PYTHONUNBUFFERED=1 and no variable besides runtime ones and Settings."""
    env = dockerfile_env()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert set(env) <= RUNTIME_ENV | {name for name in SETTINGS_NAMES if name not in SECRET_NAMES}
    arguments = " ".join(rest for keyword, rest in dockerfile_instructions() if keyword == "ARG")
    assert not any(name in arguments for name in SECRET_NAMES)


def test_dockerignore_keeps_secrets_out_of_the_build() -> None:
    """The build context leaves out .env files and deploy/archiver.env, but keeps README.md."""
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()}
    assert {".env", "deploy/*.env", ".venv", ".git"} <= patterns
    assert not {"README.md", "pyproject.toml", "*.md"} & patterns
