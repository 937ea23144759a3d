"""``make airflow``: the Airflow 3 stack of docker-compose.yaml, on this machine, without Docker.

    python -m local_aws.devtools.airflow_stack [--port 8080] [--aws-port 4566] [--home .airflow]
    python -m local_aws.devtools.airflow_stack seed --endpoint-url http://local-aws:4566   # compose's seeding

Starts local_aws, puts a sample dataset at the DAG's default ``dataset_s3_uri`` in its S3,
migrates a metadata database under ``--home`` and runs the api-server (UI on 127.0.0.1),
scheduler, dag-processor and triggerer, each in its own process group, with the
``aws_default`` connection pointing at local_aws. This is the one-machine layout of
``airflow standalone`` (SQLite + LocalExecutor + simple auth manager) with the
components driven here, so the tests can start, watch and stop them. Ctrl-C stops
every child.

Tests use it as a context manager::

    with AirflowStack(home, api_port=0, aws_port=0) as stack:
        api = stack.api_client()          # httpx.Client on /api/v2 with a JWT
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from local_aws.devtools.sandbox import (
    REPO_ROOT,
    LocalAwsProcess,
    airflow,
    airflow_environment,
    generate_sample_dataset,
    upload_directory,
)
from local_aws.infra.ports import free_port
from local_aws.infra.processes import ProcessGroup, stop_all

if TYPE_CHECKING:
    import httpx

DAG_ID = "dog_breed_pipeline"
# The DAG's default dataset_s3_uri (plugins/dog_breed/params.py), so a trigger with defaults finds data.
DEFAULT_DATASET_URI = "s3://dog-breed-pipeline/dogImages"
ADMIN_USER = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
# (name, airflow sub-command); api-server last in the list, first to stop is the reverse.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("scheduler", ("scheduler",)),
    ("dag-processor", ("dag-processor",)),
    ("triggerer", ("triggerer",)),
)
HEALTHY_COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
# Like compose's `restart: always`, but bounded so a component that cannot start fails loudly.
MAX_RESTARTS = 3
# Several processes write one SQLite file (in WAL mode, set after migrating). The background
# components wait longer for its lock than sqlite3's default 5 s, through [database]
# sql_alchemy_connect_args. Not the api-server: it mixes sync and async sessions on one event
# loop, so a long wait there blocks the very loop whose transaction holds the lock.
SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 30}
PATIENT_DATABASE_ENV = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS": "local_aws.devtools.airflow_stack.SQLITE_CONNECT_ARGS"
}


def seed_sample_dataset(
    endpoint_url: str, workdir: Path, dataset_uri: str = DEFAULT_DATASET_URI, profile: str = "demo"
) -> int:
    """Generate the sample dogImages of ``profile`` and upload it; returns the count."""
    target = generate_sample_dataset(workdir / "dogImages", profile)
    return upload_directory(endpoint_url, target, dataset_uri)


class StackSecrets:
    """Fernet key, API and JWT secrets and the admin password, generated once per home and kept (0600)."""

    def __init__(self, home: Path):
        self.path = home / "stack_secrets.json"
        if self.path.exists():
            values = json.loads(self.path.read_text())
        else:
            from cryptography.fernet import Fernet

            values = {
                "fernet_key": Fernet.generate_key().decode(),
                "api_secret_key": secrets.token_urlsafe(32),
                "jwt_secret": secrets.token_urlsafe(48),
                "admin_password": secrets.token_urlsafe(12),
            }
            _write_private(self.path, json.dumps(values, indent=2))
        self.fernet_key: str = values["fernet_key"]
        self.api_secret_key: str = values["api_secret_key"]
        self.jwt_secret: str = values["jwt_secret"]
        self.admin_password: str = values["admin_password"]


def _write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(content)


class AirflowStack:
    """local_aws + api-server + scheduler + dag-processor + triggerer, as child process groups."""

    def __init__(
        self,
        home: Path | str = REPO_ROOT / ".airflow",
        api_port: int = 8080,
        aws_port: int = 4566,
        sample_profile: str | None = "demo",
        parallelism: int = 4,
    ):
        self.home = Path(home).resolve()
        self.api_port = api_port or free_port()
        self.aws_port = aws_port
        self.sample_profile = sample_profile
        self.parallelism = parallelism
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.login = ADMIN_USER
        self.password = ""
        self.aws: LocalAwsProcess | None = None
        self.env: dict[str, str] = {}
        self.log_dir = self.home / "stack-logs"
        self._processes: dict[str, ProcessGroup] = {}

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 600) -> AirflowStack:
        """Start everything and wait until the API reports every component healthy."""
        deadline = time.monotonic() + timeout
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        stack_secrets = StackSecrets(self.home)
        self.password = stack_secrets.admin_password
        passwords_file = self.home / "simple_auth_manager_passwords.json"
        _write_private(passwords_file, json.dumps({self.login: self.password}))
        try:
            self.aws = LocalAwsProcess(self.home / "local_aws", port=self.aws_port).start()
            if self.sample_profile:
                seed_sample_dataset(self.aws.url, self.home / "sample_data", profile=self.sample_profile)
            self.env = self._environment(stack_secrets, passwords_file)
            airflow(["db", "migrate"], self.env, timeout=600, log_path=self.log_dir / "db-migrate.log")
            _use_write_ahead_log(self.home / "airflow.db")
            for name, command in (*COMPONENTS, ("api-server", self._api_server_command())):
                self._spawn(name, command)
            self._wait_healthy(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace: float = 30) -> None:
        """SIGTERM every component's process group, then SIGKILL what is left after ``grace`` s
        (task processes the LocalExecutor started live in the components' groups)."""
        stop_all(reversed(list(self._processes.values())), grace)
        self._processes.clear()
        if self.aws is not None:
            self.aws.stop()
            self.aws = None

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the stack runs with -------------------------------------------------------------
    @property
    def aws_url(self) -> str:
        return self.aws.url if self.aws else ""

    def _environment(self, stack_secrets: StackSecrets, passwords_file: Path) -> dict[str, str]:
        assert self.aws is not None
        base = airflow_environment(self.home, self.aws.url)
        return {
            **base,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__FERNET_KEY": stack_secrets.fernet_key,
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.login}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__SECRET_KEY": stack_secrets.api_secret_key,
            "AIRFLOW__API_AUTH__JWT_SECRET": stack_secrets.jwt_secret,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), base["PYTHONPATH"]]),
            # New DAG files show up within seconds instead of the default minutes.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        }

    def _api_server_command(self) -> tuple[str, ...]:
        return ("api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1")

    def _spawn(self, name: str, command: tuple[str, ...]) -> None:
        executable = str(Path(sys.executable).with_name("airflow"))
        # Own process group: Ctrl-C reaches only this process, which then stops the whole group.
        self._processes[name] = ProcessGroup(
            [executable, *command],
            name=f"airflow {name}",
            cwd=REPO_ROOT,
            env=self.env if name == "api-server" else {**self.env, **PATIENT_DATABASE_ENV},
            stdout=self.log_dir / f"{name}.log",
        ).start()

    def _wait_healthy(self, deadline: float) -> None:
        import httpx

        last: Any = "no answer"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                health = httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
                last = health
                if all((health.get(part) or {}).get("status") == "healthy" for part in HEALTHY_COMPONENTS):
                    return
            except (httpx.HTTPError, ValueError) as error:
                last = error
            time.sleep(2)
        raise TimeoutError(f"Airflow stack not healthy in time: {last}; logs in {self.log_dir}")

    def check_alive(self) -> None:
        """Restart a component that exited; raise with its log's tail once it used up its restarts."""
        for name, process in self._processes.items():
            if process.running:
                continue
            tail = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
            if process.starts > MAX_RESTARTS:
                raise RuntimeError(
                    f"airflow {name} exited with {process.returncode} {process.starts} times:\n{tail}"
                )
            print(f"airflow {name} exited with {process.returncode}; restarting", file=sys.stderr, flush=True)
            process.start()  # kills what its previous run left in the group first

    # -- REST API ---------------------------------------------------------------------------
    def token(self) -> str:
        """A JWT for the admin user from the simple auth manager's ``/auth/token``."""
        import httpx

        response = httpx.post(
            f"{self.api_url}/auth/token", json={"username": self.login, "password": self.password}, timeout=30
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def api_client(self) -> httpx.Client:
        """An ``httpx.Client`` on ``/api/v2`` authenticated as the admin user."""
        import httpx

        return httpx.Client(
            base_url=f"{self.api_url}/api/v2",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=60,
        )

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout: float = 300) -> dict[str, Any]:
        """The DAG's REST representation once the dag-processor has parsed it; import errors raise."""
        deadline = time.monotonic() + timeout
        with self.api_client() as api:
            while time.monotonic() < deadline:
                self.check_alive()
                response = api.get(f"/dags/{dag_id}")
                if response.status_code == 200:
                    return response.json()
                errors = api.get("/importErrors").json().get("import_errors", [])
                if errors:
                    raise RuntimeError(f"DAG import errors: {json.dumps(errors, indent=2)[:4000]}")
                time.sleep(3)
        raise TimeoutError(
            f"{dag_id} not parsed within {timeout:.0f} s; see {self.log_dir}/dag-processor.log"
        )

    def banner(self) -> str:
        from local_aws.devtools.demo import DEMO_PROFILE

        return "\n".join(
            [
                "",
                f"Airflow UI     {self.api_url}",
                f"model page     {self.api_url}/plugin/dog-breed-model  (plugins/dog_breed_ui.py)",
                f"login          {self.login} / {self.password}",
                f"local_aws      {self.aws_url}  (aws_default points here)",
                f"sample data    {DEFAULT_DATASET_URI}",
                f"logs           {self.log_dir}",
                "",
                f"Trigger {DAG_ID} from the UI; offline, use the laptop profile as the run's config",
                "(pretrained weights cannot be downloaded here):",
                json.dumps(DEMO_PROFILE),
                "",
                "Ctrl-C stops everything.",
            ]
        )


def _use_write_ahead_log(database: Path) -> None:
    """WAL lets the API read while the scheduler writes; the mode is stored in the file itself."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(database, timeout=60)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def run(args: argparse.Namespace) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = AirflowStack(args.home, api_port=args.port, aws_port=args.aws_port)
    started = time.monotonic()
    print(f"starting Airflow in {stack.home} (logs in {stack.log_dir}) ...", flush=True)
    with stack:
        try:
            stack.wait_for_dag(DAG_ID, timeout=300)
        except (RuntimeError, TimeoutError) as error:  # keep serving: the UI shows the import error too
            print(f"warning: {error}", flush=True)
        print(f"ready in {time.monotonic() - started:.0f} s", flush=True)
        print(stack.banner(), flush=True)
        while not stop.wait(5):
            stack.check_alive()
    print("stopped", flush=True)


def seed(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    count = seed_sample_dataset(args.endpoint_url, workdir, args.dataset_uri, args.profile)
    print(f"uploaded {count} sample images to {args.dataset_uri}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local_aws.devtools.airflow_stack", description=__doc__)
    parser.set_defaults(handler=run)
    parser.add_argument("--home", default=str(REPO_ROOT / ".airflow"), help="AIRFLOW_HOME and stack state")
    parser.add_argument("--port", type=int, default=8080, help="api-server (UI) port on 127.0.0.1")
    parser.add_argument("--aws-port", type=int, default=4566, help="local_aws port on 127.0.0.1")
    commands = parser.add_subparsers(title="commands")
    seeding = commands.add_parser("seed", help="only upload the sample dataset to an existing local_aws")
    seeding.set_defaults(handler=seed)
    seeding.add_argument("--endpoint-url", required=True)
    seeding.add_argument("--dataset-uri", default=DEFAULT_DATASET_URI)
    seeding.add_argument("--profile", default="demo", help="sample-data size: demo or tiny")
    seeding.add_argument("--workdir", default="/tmp/dog-breed-sample")  # noqa: S108 - scratch for a container
    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
