"""docker-compose.yaml, Dockerfile and `make env`, checked statically (there is no Docker engine here).

PyYAML resolves the ``x-airflow-common`` anchors and merge keys the way compose does;
``${VAR:-default}`` interpolation is applied by ``interpolate`` below with compose's rules
for the forms this file uses. ``docker compose config`` runs too when a compose client exists.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from local_aws.devtools.compose_env import SECRET_VARIABLES, render, write_env_file

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
)
LONG_RUNNING = (*AIRFLOW_SERVICES[:-1], "postgres", "redis", "local-aws")
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``; ``$$`` stays a literal ``$``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def env_values(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("compose") / ".env"
    assert write_env_file(path)
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")
    )


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], env_values: dict[str, str]) -> dict[str, Any]:
    return interpolate(raw, env_values)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in (service.get("environment") or {}).items()}


def test_has_the_official_airflow_3_services(services: dict[str, Any]) -> None:
    assert set(AIRFLOW_SERVICES) | {"postgres", "redis", "local-aws"} <= set(services)
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES[:-1]}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-worker": "celery worker",
        "airflow-triggerer": "triggerer",
    }


def test_celery_executor_on_redis_and_postgres(services: dict[str, Any], env_values: dict[str, str]) -> None:
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
        assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://:{env_values['REDIS_PASSWORD']}@redis:6379/0"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check and check["test"], name
    assert services["postgres"]["healthcheck"]["test"] == ["CMD", "pg_isready", "-U", "airflow"]
    assert "/_local_aws/health" in " ".join(services["local-aws"]["healthcheck"]["test"])
    assert "/api/v2/version" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])


def test_start_order_waits_on_health_and_init(services: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
        if name != "airflow-init":
            assert depends["airflow-init"] == {"condition": "service_completed_successfully"}, name
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}
    for name in ("airflow-worker", "airflow-triggerer"):  # the components that call AWS
        assert services[name]["depends_on"]["local-aws"] == {"condition": "service_healthy"}
    assert services["local-aws-seed"]["depends_on"]["local-aws"] == {"condition": "service_healthy"}
    assert environment(services["airflow-init"])["_AIRFLOW_DB_MIGRATE"] == "true"


def test_project_folders_are_mounted(services: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        mounts = services[name]["volumes"]
        for folder in ("dags", "plugins", "model_scripts", "logs", "config"):
            assert f"./{folder}:/opt/airflow/{folder}" in mounts, (name, folder)
    assert "local-aws-state:/state" in services["local-aws"]["volumes"]


def test_images_are_built_from_the_repository_dockerfile(services: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        build = services[name]["build"]
        assert (build["context"], build["dockerfile"], build["target"]) == (".", "Dockerfile", "airflow")
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in environment(services[name])
    assert services["local-aws"]["build"]["target"] == "local-aws"
    assert services["local-aws-seed"]["image"] == services["local-aws"]["image"]

    dockerfile = (REPO / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM (\S+) AS (\S+)$", dockerfile, re.MULTILINE))
    assert set(stages.values()) == {"airflow", "local-aws"}
    assert "ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11" in dockerfile
    assert (
        "pip install --no-cache-dir -r /opt/dog-breed/requirements.txt -c /opt/dog-breed/constraints.txt"
        in (dockerfile)
    )
    assert "pip install --no-cache-dir -r requirements-local-aws.txt -c constraints.txt" in dockerfile
    for copied in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, re.MULTILINE):
        for source in copied.split():
            assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git"} <= set(ignored)


def test_local_aws_listens_inside_the_network_and_is_the_default_connection(services: dict[str, Any]) -> None:
    from airflow.models.connection import Connection

    command = services["local-aws"]["command"]
    assert command == [
        "python",
        "-m",
        "local_aws",
        "--host",
        "0.0.0.0",
        "--port",
        "4566",
        "--state-dir",
        "/state",
    ]
    uri = environment(services["airflow-worker"])["AIRFLOW_CONN_AWS_DEFAULT"]
    connection = Connection(conn_id="aws_default", uri=uri)
    assert connection.conn_type == "aws"
    assert connection.extra_dejson == {"endpoint_url": "http://local-aws:4566", "region_name": "us-east-1"}


def test_one_variable_switches_to_real_aws(raw: dict[str, Any], env_values: dict[str, str]) -> None:
    real = "aws://AKIAEXAMPLE:secret%2Fkey@/?region_name=eu-west-1"
    services = interpolate(raw, {**env_values, "AIRFLOW_CONN_AWS_DEFAULT": real})["services"]
    for name in AIRFLOW_SERVICES:
        assert environment(services[name])["AIRFLOW_CONN_AWS_DEFAULT"] == real


def test_ports_are_published_on_loopback_only(services: dict[str, Any]) -> None:
    published = {name: service.get("ports", []) for name, service in services.items() if service.get("ports")}
    assert published == {"airflow-apiserver": ["127.0.0.1:8080:8080"], "local-aws": ["127.0.0.1:4566:4566"]}


def test_secrets_come_only_from_the_env_file(raw: dict[str, Any], env_values: dict[str, str]) -> None:
    text = COMPOSE_FILE.read_text()
    for name in SECRET_VARIABLES:
        assert f"${{{name}:?" in text, f"{name} must be required, not defaulted"
    for literal in ("airflow:airflow@", "POSTGRES_PASSWORD: airflow", "FERNET_KEY: ''", ":-airflow}"):
        assert literal not in text
    # Without .env, compose must refuse instead of starting with empty secrets.
    with pytest.raises(KeyError, match="run make env"):
        interpolate(raw, {})
    common = environment(interpolate(raw, env_values)["services"]["airflow-scheduler"])
    assert common["AIRFLOW__CORE__FERNET_KEY"] == env_values["AIRFLOW_FERNET_KEY"]
    assert common["AIRFLOW__API_AUTH__JWT_SECRET"] == env_values["AIRFLOW_JWT_SECRET"]


def test_make_env_writes_fresh_private_secrets(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    first, second = tmp_path / "a.env", tmp_path / "b.env"
    assert write_env_file(first) and write_env_file(second)
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    values = [dict(line.split("=", 1) for line in p.read_text().splitlines()[1:]) for p in (first, second)]
    assert set(SECRET_VARIABLES) <= set(values[0])
    for name in SECRET_VARIABLES:
        assert values[0][name] and values[0][name] != values[1][name], name
    Fernet(values[0]["AIRFLOW_FERNET_KEY"].encode())  # a valid key
    assert int(values[0]["AIRFLOW_UID"]) == (os.getuid() or 50000)
    before = first.read_text()
    assert not write_env_file(first)  # kept: its key encrypts data already stored
    assert first.read_text() == before
    example = (REPO / ".env.example").read_text()
    for name in SECRET_VARIABLES:
        assert re.search(rf"^{name}=$", example, re.MULTILINE), (
            f".env.example must list {name} without a value"
        )
    assert "/.env" in (REPO / ".gitignore").read_text().splitlines()


def compose_client() -> list[str] | None:
    """``docker compose`` (v2 plugin) or the standalone ``docker-compose``, whichever works here."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if (
            shutil.which(command[0])
            and subprocess.run([*command, "version"], capture_output=True).returncode == 0
        ):
            return command
    return None


def test_compose_client_renders_the_same_file(
    tmp_path: Path, services: dict[str, Any], env_values: dict[str, str]
) -> None:
    client = compose_client()
    if client is None:
        pytest.skip("no docker compose client on this machine; the static checks above stand in for it")
    env_file = tmp_path / ".env"
    env_file.write_text(render(env_values))
    base = [*client, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"]
    # compose lets the shell's variables override the env file: give it a shell without
    # the AIRFLOW_* that other tests in this process have set.
    shell = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    rendered = subprocess.run(base, capture_output=True, text=True, cwd=REPO, env=shell)
    assert rendered.returncode == 0, rendered.stderr
    by_client = yaml.safe_load(rendered.stdout)["services"]
    assert set(by_client) == set(services)
    for name in AIRFLOW_SERVICES:
        assert environment(by_client[name]) == environment(services[name]), name
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    without_env = subprocess.run(
        [*client, "--env-file", str(empty_env_file), "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=shell,
    )
    assert without_env.returncode != 0
    assert "run make env" in without_env.stderr
