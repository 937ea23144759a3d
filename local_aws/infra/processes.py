"""A command in its own process group: what every process local_aws starts is run as.

Training entry points, model servers, Lambda workers, ``python -m local_aws`` and the Airflow
components all spawn children (data-loader workers, task processes). Each runs in a new
session, so one signal to the group reaches all of them and nothing outlives a stop: SIGTERM
first, SIGKILL for whatever is left after the grace period. The moment the leader is seen to
have exited, what it left in its group is killed, once; after that the group is never
signalled again: its number may by then belong to a new, unrelated group (PIDs wrap around
quickly on a busy machine, and every process we start leads a group). Output is pumped line
by line to a callback in a thread (so a full pipe never blocks the child), appended to a
file, or discarded. ``start()`` again restarts.
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
        self._gone = True  # the leader was reaped and its group swept: never signal it again
        self._lock = threading.Lock()

    # -- state ----------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._exited(self._process.poll()) if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self.returncode is None

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if the leader still runs after ``timeout`` seconds."""
        if self._process is None:
            return None
        try:
            return self._exited(self._process.wait(timeout))
        except subprocess.TimeoutExpired:
            return None

    def _exited(self, code: int | None) -> int | None:
        """Called with every exit code read: the first time, kill the leader's leftovers."""
        if code is not None:
            with self._lock:
                sweep, self._gone = not self._gone, True
            if sweep:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        return code

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
        if self.running:  # (reading the exit code swept the previous run's leftovers)
            raise RuntimeError(f"{self.name} is already running")
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
        self._gone = False
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
        """Signal every process of the group, unless it is gone (see the module's docstring)."""
        if self._process is None or self.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)

    def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (and for stragglers once it exited)."""
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
        group.wait(0)  # a leader that had exited unnoticed: its leftovers are swept now
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
