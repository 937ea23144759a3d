"""One endpoint instance: a model-server process (:mod:`.model_server`) in its own process group.

It announces its port on stdout; it is routed to only once /ping answers 200. Its output goes
to CloudWatch Logs (``/aws/sagemaker/Endpoints/<endpoint>``, stream ``<variant>/<instance>``).
"""

from __future__ import annotations

import collections
import http.client
import logging
import os
import secrets
import sys
import threading
import time
from pathlib import Path

from local_aws.infra.processes import ProcessGroup
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
