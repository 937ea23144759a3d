"""Run the pipeline's surroundings on one machine: local_aws as a process, the dataset in its
S3, and an Airflow environment whose ``aws_default`` connection points at it.

Shared by ``make demo``, ``make airflow``, the end-to-end tests and the benchmarks, so
they all set things up the same way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
_READY = re.compile(r"local_aws ready on (http://\S+)")


class LocalAwsProcess:
    """``python -m local_aws`` in its own process group; ``with LocalAwsProcess(dir) as aws: aws.url``."""

    def __init__(self, state_dir: Path | str, port: int = 0, log_path: Path | str | None = None):
        self.state_dir = Path(state_dir)
        self.port = port
        self.log_path = Path(log_path) if log_path else self.state_dir / "local_aws.log"
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60) -> LocalAwsProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("w")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "local_aws", "--port", str(self.port), "--state-dir", str(self.state_dir)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,  # its children (training, model servers, Lambda workers) die with it
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        assert self._process.stdout is not None
        while time.monotonic() < deadline:
            line = self._process.stdout.readline()
            if not line:
                break
            found = _READY.search(line)
            if found:
                self.url = found.group(1)
                wait_healthy(self.url, deadline - time.monotonic())
                return self
        self.stop()
        raise RuntimeError(f"local_aws did not start within {timeout:.0f} s; see {self.log_path}")

    def stop(self, grace: float = 15) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()

    def __enter__(self) -> LocalAwsProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_local_aws/health", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def client(service: str, endpoint_url: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - local_aws accepts any credentials
    )


def upload_directory(endpoint_url: str, local_dir: Path | str, s3_uri: str) -> int:
    """Upload every file under ``local_dir`` to ``s3_uri`` (bucket created if needed); returns the count."""
    bucket, _, prefix = s3_uri.removeprefix("s3://").partition("/")
    s3 = client("s3", endpoint_url)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
    count = 0
    root = Path(local_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = "/".join(filter(None, [prefix.rstrip("/"), path.relative_to(root).as_posix()]))
        s3.upload_file(str(path), bucket, key)
        count += 1
    return count


def aws_connection(endpoint_url: str, region: str = REGION) -> str:
    """The ``aws_default`` connection, as Airflow reads it from AIRFLOW_CONN_AWS_DEFAULT."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "local",
            "password": "local",
            "extra": {"endpoint_url": endpoint_url, "region_name": region},
        }
    )


def airflow_environment(airflow_home: Path | str, endpoint_url: str) -> dict[str, str]:
    """Environment for Airflow commands run against local_aws, from this repository's dags/ and plugins/."""
    home = Path(airflow_home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(endpoint_url),
        # local_aws jobs take seconds, not hours: poll often.
        "AIRFLOW__DOG_BREED__POLL_INTERVAL_SECONDS": "2",
        "AIRFLOW__DOG_BREED__RETRY_DELAY_SECONDS": "2",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "plugins"), os.getenv("PYTHONPATH")])),
        # The Lambda and endpoint processes that local_aws starts find boto3's endpoint through it;
        # Airflow itself only through the connection above.
        "NO_PROXY": "127.0.0.1,localhost",
    }


def airflow(args: list[str], env: dict[str, str], timeout: float, log_path: Path | None = None) -> None:
    """Run ``airflow <args>`` from this venv; raise with the log tail on failure."""
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    with log_path.open("a") if log_path else open(os.devnull, "w") as log:
        completed = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    if completed.returncode != 0:
        tail = log_path.read_text()[-4000:] if log_path else ""
        raise RuntimeError(f"airflow {' '.join(args[:2])} exited {completed.returncode}\n{tail}")
