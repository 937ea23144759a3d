"""The machinery behind an endpoint: model-server processes, one per instance.

* :class:`ModelInstance` is one model-server process (:mod:`.model_server`) in its own
  process group, its output shipped to CloudWatch Logs; it announces its port on stdout.
* :class:`VariantFleet` is a production variant's instances with round-robin routing,
  scale-out (start, wait for /ping, then route) and scale-in (unroute, drain, stop).
* :class:`Deployment` is one endpoint config brought up: every variant's fleet, plus the
  count of requests in flight so an update can drain it before stopping it.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import itertools
import logging
import os
import random
import secrets
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_aws.infra.archives import extract_tar
from local_aws.infra.processes import ProcessGroup
from local_aws.infra.s3 import split_s3_uri
from local_aws.services.base import Context
from local_aws.services.sagemaker.hosting import model_server
from local_aws.services.sagemaker.hosting.model_server import PORT_ANNOUNCEMENT

log = logging.getLogger("local_aws.hosting")

PROJECT_ROOT = Path(__file__).resolve().parents[4]  # so child processes can import local_aws
STOP_GRACE_SECONDS = 5.0
INVOCATION_TIMEOUT_SECONDS = 60.0  # real-time endpoints: the container has 60 s to answer
PING_INTERVAL_SECONDS = 0.1


class StartupFailure(Exception):
    """An instance or a whole deployment could not come up; the message is the FailureReason."""


class InFlight:
    """A count of requests in progress that one can wait to reach zero."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def enter(self) -> None:
        with self._idle:
            self._count += 1

    def exit(self) -> None:
        with self._idle:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout=timeout)


# -- model data ------------------------------------------------------------------------------------
def _download(context: Context, uri: str, target: Path) -> None:
    try:
        bucket, key = split_s3_uri(uri)
    except ValueError as error:
        raise StartupFailure(f"local_aws reads model data from S3 only: {error}") from error
    try:
        context.client("s3").download_file(bucket, key, str(target))
    except Exception as error:
        raise StartupFailure(
            f"Failed to download model data(bucket: {bucket}, key: {key}). Please ensure that there is an "
            "object located at the URL and that the role passed to CreateModel has permissions to "
            f"download the object. ({error})"
        ) from error


def prepare_model_dir(context: Context, container: dict[str, Any], model_dir: Path) -> None:
    """Unpack the container's ``ModelDataUrl`` into ``model_dir`` as SageMaker does into /opt/ml/model.

    Handler code is ``code/`` inside the archive; when the archive has none and
    ``SAGEMAKER_SUBMIT_DIRECTORY`` names a source tarball in S3 (the framework containers'
    older convention), that tarball is unpacked into ``code/``.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_dir.parent) as scratch:
        if model_data := container.get("ModelDataUrl"):
            archive = Path(scratch) / "model.tar.gz"
            _download(context, model_data, archive)
            try:
                extract_tar(archive, model_dir)
            except (tarfile.TarError, OSError) as error:
                raise StartupFailure(
                    f"Model data at {model_data} is not a valid tar.gz archive: {error}"
                ) from error
        environment = container.get("Environment") or {}
        program = environment.get("SAGEMAKER_PROGRAM") or "inference.py"
        submit_directory = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
        if submit_directory.startswith("s3://") and not (model_dir / "code" / program).exists():
            archive = Path(scratch) / "sourcedir.tar.gz"
            _download(context, submit_directory, archive)
            try:
                extract_tar(archive, model_dir / "code")
            except (tarfile.TarError, OSError) as error:
                raise StartupFailure(
                    f"Source at {submit_directory} is not a valid tar.gz archive: {error}"
                ) from error


# -- one instance ----------------------------------------------------------------------------------
class ModelInstance:
    """One model-server process (restartable), routed to only while it answers /ping."""

    def __init__(
        self,
        context: Context,
        endpoint_name: str,
        variant_name: str,
        model_dir: Path,
        environment: dict[str, str],
    ):
        self.instance_id = "i-" + secrets.token_hex(9)[:17]
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name
        self.log_group = f"/aws/sagemaker/Endpoints/{endpoint_name}"
        self.log_stream = f"{variant_name}/{self.instance_id}"
        self.log_stream_arn = context.arn("logs", f"log-group:{self.log_group}:log-stream:{self.log_stream}")
        self.in_flight = InFlight()
        self._logs = context.logs
        self._lock = threading.Lock()
        self._port: int | None = None
        self._port_known = threading.Event()
        self._tail: collections.deque[str] = collections.deque(maxlen=15)
        self._stopped = False
        env = {
            **os.environ,
            **environment,
            **context.worker_environment(),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "-m", model_server.__name__, "--model-dir", str(model_dir), "--port", "0"]
        # Its own process group: stop() takes the server's children with it.
        self._group = ProcessGroup(
            command, name=self.instance_id, env=env, cwd=model_dir, stdout=self._on_output
        )

    @property
    def port(self) -> int:
        assert self._port is not None
        return self._port

    @property
    def exited(self) -> bool:
        return self._group.starts > 0 and not self._group.running

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start(self, timeout: float) -> None:
        """Start the process (again, after a crash) and return once /ping answers 200;
        raise StartupFailure otherwise."""
        with self._lock:
            if self._stopped:
                raise StartupFailure("instance stopped while starting")
            self._port_known.clear()
            self._port = None
            self._group.start()
        self._wait_healthy(time.monotonic() + timeout)

    def _on_output(self, line: str) -> None:
        if line.startswith(PORT_ANNOUNCEMENT) and not self._port_known.is_set():
            self._port = int(line.removeprefix(PORT_ANNOUNCEMENT))
            self._port_known.set()
            return
        self._tail.append(line)
        self._logs.put(self.log_group, self.log_stream, line)

    def _wait_healthy(self, deadline: float) -> None:
        while time.monotonic() < deadline and not self._stopped:
            if not self._group.running:
                self._group.join_output(timeout=1)  # the last lines carry the reason
                raise StartupFailure(
                    self._failure_reason(f"the model server exited with code {self._group.returncode}")
                )
            if self._port_known.is_set() and self._ping():
                return
            time.sleep(PING_INTERVAL_SECONDS)
        if self._stopped:
            raise StartupFailure("instance stopped while starting")
        self.stop()
        raise StartupFailure(self._failure_reason("the model server did not answer /ping in time"))

    def invoke(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """POST /invocations: (status, headers, body); TimeoutError past the invocation timeout,
        OSError or HTTPException if the server is gone."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=INVOCATION_TIMEOUT_SECONDS)
        try:
            connection.request("POST", "/invocations", body=body, headers=headers)
            reply = connection.getresponse()
            return reply.status, dict(reply.headers), reply.read()
        finally:
            connection.close()

    def _ping(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/ping")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def _failure_reason(self, what: str) -> str:
        last_lines = " | ".join(line for line in self._tail if line.strip())[-1500:]
        return (
            f"The primary container for production variant {self.variant_name} did not pass the ping health "
            f"check. Please check CloudWatch logs for this endpoint. (local_aws: {what}; last log lines: "
            f"{last_lines or 'none'})"
        )

    def stop(self) -> None:
        """Terminate the process group; kill it if it does not leave within the grace period."""
        with self._lock:
            self._stopped = True
        self._group.stop(STOP_GRACE_SECONDS)

    @property
    def pid(self) -> int | None:
        return self._group.pid


# -- a variant's instances ----------------------------------------------------------------------
InstanceFactory = Callable[[], ModelInstance]


@dataclass
class VariantFleet:
    """A production variant's instances; ``routable`` are the ones requests go to."""

    name: str
    image: str
    model_dir: Path
    weight: float
    desired_count: int
    startup_timeout: float
    new_instance: InstanceFactory
    deployed_at: Any
    instances: list[ModelInstance] = field(default_factory=list)
    routable: list[ModelInstance] = field(default_factory=list)
    invocations: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=100_000))
    _cursor: itertools.count = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _scaling: threading.Lock = field(default_factory=threading.Lock)

    @property
    def current_count(self) -> int:
        with self._lock:
            return len(self.routable)

    def scale_to(self, count: int) -> None:
        """Start instances up to ``count`` (all healthy before any is routed), or drain and stop extras."""
        with self._scaling:
            self.desired_count = count
            with self._lock:
                missing = count - len(self.instances)
            if missing > 0:
                started = [self.new_instance() for _ in range(missing)]
                with self._lock:
                    self.instances.extend(started)
                _start_all(started, self.startup_timeout)  # raises StartupFailure: the caller stops the fleet
                with self._lock:
                    self.routable.extend(started)
            elif missing < 0:
                with self._lock:
                    extra = self.instances[count:]
                    del self.instances[count:]
                    self.routable = [i for i in self.routable if i not in extra]
                for instance in extra:
                    instance.in_flight.wait_idle(timeout=65)
                    instance.stop()

    def invocations_last_minute(self) -> int:
        """SageMaker's ``Invocations`` metric over the last minute (what target tracking reads)."""
        cutoff = time.monotonic() - 60
        with self._lock:
            return sum(1 for moment in self.invocations if moment >= cutoff)

    def candidates(self) -> list[ModelInstance]:
        """Routable instances in round-robin order: each request starts one further along."""
        with self._lock:
            self.invocations.append(time.monotonic())
            routable = list(self.routable)
            start = next(self._cursor) % len(routable) if routable else 0
        return routable[start:] + routable[:start]

    @contextlib.contextmanager
    def leased(self, instance: ModelInstance) -> Iterator[bool]:
        """Count a request in flight on ``instance`` if it is still routable (scale-in waits for it)."""
        with self._lock:
            routable = instance in self.routable
            if routable:
                instance.in_flight.enter()
        try:
            yield routable
        finally:
            if routable:
                instance.in_flight.exit()

    def unroute(self, instance: ModelInstance) -> None:
        with self._lock:
            if instance in self.routable:
                self.routable.remove(instance)

    def reroute(self, instance: ModelInstance) -> None:
        with self._lock:
            if instance in self.instances and instance not in self.routable:
                self.routable.append(instance)

    def stop(self) -> None:
        with self._lock:
            instances = list(self.instances)
            self.routable = []
        _run_all([instance.stop for instance in instances])


def _start_all(instances: list[ModelInstance], timeout: float) -> None:
    errors = _run_all([lambda instance=instance: instance.start(timeout) for instance in instances])
    if errors:
        raise errors[0]


def _run_all(tasks: list[Callable[[], None]]) -> list[BaseException]:
    """Run tasks in threads, wait for all, return what they raised."""
    errors: list[BaseException] = []

    def run(task: Callable[[], None]) -> None:
        try:
            task()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(task,), daemon=True) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


# -- one endpoint config, deployed ----------------------------------------------------------------
class Deployment:
    """An endpoint config's variants, running. Requests hold a lease (``in_flight``) while they use it."""

    def __init__(self, config_name: str, directory: Path, variants: list[VariantFleet]):
        self.config_name = config_name
        self.directory = directory
        self.variants = {variant.name: variant for variant in variants}
        self.in_flight = InFlight()
        self._stopped = threading.Event()

    def start(self) -> None:
        errors = _run_all([lambda v=v: v.scale_to(v.desired_count) for v in self.variants.values()])
        if errors:
            self.stop()
            raise errors[0] if isinstance(errors[0], StartupFailure) else StartupFailure(str(errors[0]))
        if self._stopped.is_set():
            raise StartupFailure("deployment stopped while starting")

    def pick_variant(self, target: str | None) -> VariantFleet | None:
        if target:
            return self.variants.get(target)
        variants = list(self.variants.values())
        weights = [variant.weight for variant in variants]
        if sum(weights) <= 0:
            weights = [1.0] * len(variants)
        return random.choices(variants, weights=weights)[0]  # noqa: S311 - traffic split, not security

    def stop(self) -> None:
        self._stopped.set()
        _run_all([variant.stop for variant in self.variants.values()])
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()
