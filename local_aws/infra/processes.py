"""A command in its own process group: what every process local_aws starts is run as.

Training entry points, model servers, Lambda workers, ``python -m local_aws`` and the Airflow
components all spawn children (data-loader workers, task processes). Each runs in a new
session, so one signal to the group reaches all of them and nothing outlives a stop: SIGTERM
first, SIGKILL for whatever is left after the grace period, and SIGKILL again for stragglers
once the leader has gone. Output is pumped line by line to a callback in a thread (so a full
pipe never blocks the child), appended to a file, or discarded. ``start()`` again restarts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

log = logging.getLogger("local_aws.processes")

LineSink = Callable[[str], None]
# Where a stream of the child goes: lines to a callback, appended to a file, or nowhere.
Output = LineSink | Path | None
MERGED: Literal["merged"] = "merged"  # stderr goes wherever stdout goes
KILL_WAIT_SECONDS = 10.0  # SIGKILL cannot be ignored; the wait is bounded anyway


class ProcessGroup:
    """``command`` as the leader of a new process group; start, watch, stop, restart."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
        stdout: Output = None,
        stderr: Output | Literal["merged"] = MERGED,
        pass_fds: Sequence[int] = (),
    ):
        self.command = list(command)
        self.name = name
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stdout = stdout
        self.stderr = stderr
        self.pass_fds = tuple(pass_fds)
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._pumps: list[threading.Thread] = []

    # -- state ----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if the leader still runs after ``timeout`` seconds."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def exit_status(self) -> str:
        """``exit status 3`` or ``signal: kill``, as Lambda's runtime words it."""
        code = self.returncode
        if code is None:
            return "running"
        if code < 0:
            return f"signal: {signal.Signals(-code).name.removeprefix('SIG').lower()}"
        return f"exit status {code}"

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> ProcessGroup:
        """Start the command; after an earlier run, its leftovers are killed first (a restart)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        if self._process is not None:
            self.send_signal(signal.SIGKILL)  # children the previous leader left behind
            self.join_output()
        files: list[IO[bytes]] = []
        stdout = self._target(self.stdout, files)
        stderr = subprocess.STDOUT if self.stderr == MERGED else self._target(self.stderr, files)
        try:
            self._process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                pass_fds=self.pass_fds,
                start_new_session=True,
            )
        finally:
            for file in files:
                file.close()
        self.starts += 1
        self._pumps = []
        for pipe, sink in ((self._process.stdout, self.stdout), (self._process.stderr, self.stderr)):
            if pipe is not None and callable(sink):
                pump = threading.Thread(target=_pump, args=(pipe, sink, self.name), name=f"{self.name}-out")
                pump.daemon = True
                pump.start()
                self._pumps.append(pump)
        return self

    @staticmethod
    def _target(output: Output, files: list[IO[bytes]]) -> Any:
        if output is None:
            return subprocess.DEVNULL
        if isinstance(output, Path):
            output.parent.mkdir(parents=True, exist_ok=True)
            file = output.open("ab")
            files.append(file)
            return file
        return subprocess.PIPE

    def send_signal(self, signum: int) -> None:
        """Signal every process of the group; a group that is gone already is no error."""
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds, then SIGKILL for stragglers."""
        stop_all([self], grace)

    def kill(self) -> None:
        """SIGKILL the whole group now and reap the leader."""
        self.send_signal(signal.SIGKILL)
        self.wait(KILL_WAIT_SECONDS)

    def join_output(self, timeout: float = 5.0) -> None:
        """Wait until the pumps have passed on everything the group wrote."""
        for pump in self._pumps:
            pump.join(timeout)


def stop_all(groups: Iterable[ProcessGroup], grace: float) -> None:
    """Stop several groups within one grace period (SIGTERM to all first, so they wind down together)."""
    groups = list(groups)
    running = [group for group in groups if group.running]
    for group in running:
        group.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for group in running:
        if group.wait(max(0.0, deadline - time.monotonic())) is None:
            log.warning("%s did not stop within %.0f s of SIGTERM; killing it", group.name, grace)
            group.kill()
    for group in groups:
        group.send_signal(signal.SIGKILL)  # whatever the leader left in its group
        group.join_output()


def _pump(pipe: IO[bytes], sink: LineSink, name: str) -> None:
    failed = False
    for raw in iter(pipe.readline, b""):
        try:
            sink(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        except Exception:  # keep reading: a full pipe would block the child
            if not failed:
                log.exception("handling output of %s failed", name)
            failed = True
    pipe.close()
