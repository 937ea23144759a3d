"""Run the pipeline's surroundings on one machine: local_aws as a process, the dataset in its
S3, and an Airflow environment whose ``aws_default`` connection points at it.

Shared by ``make demo``, ``make airflow``, the end-to-end tests and the benchmarks, so
they all set things up the same way.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from local_aws.infra import s3
from local_aws.infra.clock import TIME_SCALE_ENV
from local_aws.infra.processes import ProcessGroup

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
SAMPLE_SCRIPT = REPO_ROOT / "model_scripts" / "sample_data.py"
# model_scripts/sample_data.py settings per profile: the demo's, and the end-to-end tests' tiny one.
SAMPLE_DATA = {
    "demo": {"classes": 5, "per_class_train": 30, "per_class_eval": 10, "size": 72},
    "tiny": {"classes": 3, "per_class_train": 8, "per_class_eval": 3, "size": 40},
}
_READY = re.compile(r"local_aws ready on (http://\S+)")
# The demo, `make airflow` and the end-to-end tests run local_aws's simulated minutes 60 times
# faster (a canary's 5-minute bake takes 5 s); LOCAL_AWS_TIME_SCALE overrides it, 1 is AWS-exact.
SANDBOX_TIME_SCALE = 60.0


def sandbox_time_scale() -> float:
    raw = os.environ.get(TIME_SCALE_ENV, "").strip()
    return float(raw) if raw else SANDBOX_TIME_SCALE


class LocalAwsProcess:
    """``python -m local_aws`` in its own process group; ``with LocalAwsProcess(dir) as aws: aws.url``."""

    def __init__(
        self,
        state_dir: Path | str,
        port: int = 0,
        log_path: Path | str | None = None,
        time_scale: float | None = None,
    ):
        self.state_dir = Path(state_dir)
        self.port = port
        self.time_scale = sandbox_time_scale() if time_scale is None else time_scale
        self.log_path = Path(log_path) if log_path else self.state_dir / "local_aws.log"
        self.url = ""
        self._ready = threading.Event()
        self._group: ProcessGroup | None = None

    def start(self, timeout: float = 60) -> LocalAwsProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("")
        command = [sys.executable, "-m", "local_aws", "--port", str(self.port)]
        command += ["--state-dir", str(self.state_dir), "--time-scale", f"{self.time_scale:g}"]
        # Its own group: its children (training, model servers, Lambda workers) die with it.
        self._group = ProcessGroup(
            command, name="local_aws", cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=self._on_output, stderr=self.log_path,
        ).start()  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1) and self._group.running and time.monotonic() < deadline:
            pass
        if self._ready.is_set():
            wait_healthy(self.url, deadline - time.monotonic())
            return self
        self.stop()
        raise RuntimeError(f"local_aws did not start within {timeout:.0f} s; see {self.log_path}")

    def _on_output(self, line: str) -> None:
        found = _READY.search(line)
        if found and not self._ready.is_set():
            self.url = found.group(1)
            self._ready.set()

    @property
    def running(self) -> bool:
        return self._group is not None and self._group.running

    def stop(self, grace: float = 15) -> None:
        if self._group is not None:
            self._group.stop(grace)

    def __enter__(self) -> LocalAwsProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def generate_sample_dataset(target: Path, profile: str) -> Path:
    """A fresh dogImages-layout sample set at ``target``, written by model_scripts/sample_data.py."""
    settings = SAMPLE_DATA[profile]
    shutil.rmtree(target, ignore_errors=True)
    command = [sys.executable, str(SAMPLE_SCRIPT), str(target), "--seed", "0"]
    command += ["--classes", str(settings["classes"]), "--size", str(settings["size"])]
    command += ["--per-class", str(settings["per_class_train"])]
    command += ["--per-class-eval", str(settings["per_class_eval"])]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=600)
    return target


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


def client(service: str, endpoint_url: str, **config: Any) -> Any:
    """A boto3 client for local_aws at ``endpoint_url``; ``config`` goes to botocore's Config
    (``parameter_validation=False`` sends what botocore would refuse, to test the server's checks)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - local_aws accepts any credentials
        config=Config(**config),
    )


def upload_directory(endpoint_url: str, local_dir: Path | str, s3_uri: str) -> int:
    """Upload every file under ``local_dir`` to ``s3_uri`` (bucket created if needed); returns the count."""
    bucket, _ = s3.split_s3_uri(s3_uri)
    s3_client = client("s3", endpoint_url)
    if bucket not in {b["Name"] for b in s3_client.list_buckets().get("Buckets", [])}:
        s3_client.create_bucket(Bucket=bucket)
    return s3.upload_directory(s3_client, Path(local_dir), s3_uri)


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
        # local_aws jobs take seconds, not hours: poll as often as the setting allows (whole
        # seconds; the tuning wait polls at 3x this). Each poll is one Describe* on loopback.
        "AIRFLOW__DOG_BREED__POLL_INTERVAL_SECONDS": "1",
        "AIRFLOW__DOG_BREED__RETRY_DELAY_SECONDS": "2",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "plugins"), os.getenv("PYTHONPATH")])),
        # The Lambda and endpoint processes that local_aws starts find boto3's endpoint through it;
        # Airflow itself only through the connection above.
        "NO_PROXY": "127.0.0.1,localhost",
    }


def rerun_tasks(
    dag_id: str, run_id: str, task_ids: list[str], env: dict[str, str], timeout: float, log_path: Path
) -> dict[str, str]:
    """``airflow tasks test`` for each task of a run, in one process (``devtools.task_reruns``):
    the tasks that did not end ``success``, with why. Raises if not every task was run."""
    command = [sys.executable, "-m", "local_aws.devtools.task_reruns", dag_id, run_id, *task_ids]
    with log_path.open("a") as log:
        completed = subprocess.run(
            command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, timeout=timeout, text=True
        )
    lines = completed.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
        ran, failed = result["ran"], result["failed"]
    except (IndexError, ValueError, KeyError):
        tail = log_path.read_text()[-4000:]
        raise RuntimeError(f"task reruns exited {completed.returncode} without a result\n{tail}") from None
    if ran != task_ids:
        raise RuntimeError(f"task reruns ran {ran}, not {task_ids}")
    return failed


def airflow(args: list[str], env: dict[str, str], timeout: float, log_path: Path | None = None) -> None:
    """Run ``airflow <args>`` from this venv; raise with the log tail on failure."""
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    with log_path.open("a") if log_path else open(os.devnull, "w") as log:
        completed = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    if completed.returncode != 0:
        tail = log_path.read_text()[-4000:] if log_path else ""
        raise RuntimeError(f"airflow {' '.join(args[:2])} exited {completed.returncode}\n{tail}")
