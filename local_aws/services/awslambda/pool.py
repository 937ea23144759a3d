"""Lambda execution environments: worker processes, one pool per function version.

A :class:`Worker` is one ``worker.py`` process in its own process group (so a
handler's children die with it), talking over two pipes. A :class:`WorkerPool` hands out
idle workers (most recently used first, so traffic stays on warm ones), starts new ones on
demand (cold starts), keeps a provisioned number warm and reaps the rest when idle.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_aws.infra.processes import ProcessGroup
from local_aws.services.awslambda.worker import LENGTH_PREFIX

WORKER_SCRIPT = Path(__file__).with_name("worker.py")


class WorkerInitError(Exception):
    """The handler module could not be loaded; ``document`` is the runtime's error shape."""

    def __init__(self, document: dict[str, Any], log_text: str):
        super().__init__(document.get("errorMessage", "init failed"))
        self.document = document
        self.log_text = log_text


@dataclass(frozen=True)
class Outcome:
    """How one invocation ended. ``kind``: result, error (handler raised), timeout or crash."""

    kind: str
    body: bytes = b""
    duration_ms: float = 0.0
    max_memory_used_mb: int = 0
    exit_status: str = ""


class Worker:
    """One execution environment. Not thread-safe: the pool lends it to one caller at a time."""

    def __init__(self, process: ProcessGroup, request_fd: int, response_fd: int, log_stream: str):
        self.process = process
        self.request_fd = request_fd
        self.response_fd = response_fd
        self.log_stream = log_stream
        self.init_duration_ms = 0.0
        self.init_log = ""
        self.invocations = 0
        self.last_used = time.monotonic()
        self._buffer = bytearray()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @classmethod
    def start(
        cls,
        *,
        env: dict[str, str],
        task_root: Path,
        log_stream: str,
        init_log_path: Path,
        init_timeout: float,
    ) -> Worker:
        """Start a worker and wait for its handler import (the cold start)."""
        request_r, request_w = os.pipe()
        response_r, response_w = os.pipe()
        command = [
            sys.executable,
            "-I",  # no user site, no PYTHON* variables, no script directory on sys.path
            str(WORKER_SCRIPT),
            "--request-fd",
            str(request_r),
            "--response-fd",
            str(response_w),
        ]
        process = ProcessGroup(
            command, name=log_stream, env=env, cwd=task_root, stdout=init_log_path,
            pass_fds=(request_r, response_w),
        )  # fmt: skip
        try:
            process.start()
        finally:
            os.close(request_r)
            os.close(response_w)
        os.set_blocking(request_w, False)
        worker = cls(process, request_w, response_r, log_stream)
        try:
            frame = worker._read_frame(time.monotonic() + init_timeout)
        finally:
            worker.init_log = _read_text(init_log_path)
            init_log_path.unlink(missing_ok=True)
        if frame is None or frame[0].get("type") != "ready":
            worker.kill()
            if frame is not None and frame[0].get("type") == "init_error":
                raise WorkerInitError(json.loads(frame[1]), worker.init_log)
            reason = "timed out" if frame is None and worker.process.running else "exited"
            document = {
                "errorType": "Runtime.ExitError" if reason == "exited" else "Sandbox.Timedout",
                "errorMessage": f"Error: Runtime {reason} during init ({worker.exit_status()})",
            }
            raise WorkerInitError(document, worker.init_log)
        worker.init_duration_ms = float(frame[0].get("init_duration_ms", 0.0))
        return worker

    def invoke(self, header: dict[str, Any], event: bytes, timeout: float) -> Outcome:
        """Run one invocation; on timeout the worker is killed (the caller must not reuse it)."""
        deadline = time.monotonic() + timeout
        self.invocations += 1
        encoded = json.dumps(header).encode()
        data = LENGTH_PREFIX.pack(len(encoded)) + encoded + LENGTH_PREFIX.pack(len(event)) + event
        if not self._write(data, deadline):
            return self._ended_without_answer(deadline)
        frame = self._read_frame(deadline)
        self.last_used = time.monotonic()
        if frame is None:
            return self._ended_without_answer(deadline)
        reply, body = frame
        return Outcome(
            kind="result" if reply.get("type") == "result" else "error",
            body=body,
            duration_ms=float(reply.get("duration_ms", 0.0)),
            max_memory_used_mb=int(reply.get("max_memory_used_mb", 0)),
        )

    def _ended_without_answer(self, deadline: float) -> Outcome:
        timed_out = time.monotonic() >= deadline and self.process.running
        self.kill()
        if timed_out:
            return Outcome(kind="timeout")
        return Outcome(kind="crash", exit_status=self.exit_status())

    def exit_status(self) -> str:
        return self.process.exit_status()

    def alive(self) -> bool:
        return self.process.running

    def kill(self) -> None:
        """Kill the whole process group (handler children included) and release the pipes."""
        self.process.kill()
        for fd in (self.request_fd, self.response_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.request_fd = self.response_fd = -1

    # -- pipe I/O with a deadline -------------------------------------------------------------
    def _write(self, data: bytes, deadline: float) -> bool:
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            _, writable, _ = select.select([], [self.request_fd], [], remaining)
            if not writable:
                continue
            try:
                view = view[os.write(self.request_fd, view) :]
            except BlockingIOError:
                continue
            except (BrokenPipeError, OSError):
                return False
        return True

    def _read_frame(self, deadline: float) -> tuple[dict[str, Any], bytes] | None:
        """The next frame, or None on timeout or end of file."""
        while True:
            frame = self._take_frame()
            if frame is not None:
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([self.response_fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(self.response_fd, 1 << 20)
            if not chunk:
                return None
            self._buffer.extend(chunk)

    def _take_frame(self) -> tuple[dict[str, Any], bytes] | None:
        buffer, size = self._buffer, LENGTH_PREFIX.size
        if len(buffer) < size:
            return None
        header_end = size + LENGTH_PREFIX.unpack_from(buffer, 0)[0]
        if len(buffer) < header_end + size:
            return None
        body_end = header_end + size + LENGTH_PREFIX.unpack_from(buffer, header_end)[0]
        if len(buffer) < body_end:
            return None
        header = json.loads(bytes(buffer[size:header_end]))
        body = bytes(buffer[header_end + size : body_end])
        del buffer[:body_end]
        return header, body


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


class WorkerPool:
    """The execution environments of one function version (one ``$LATEST`` revision)."""

    def __init__(self, start_worker: Callable[[], Worker]):
        self._start_worker = start_worker
        self._lock = threading.Lock()
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._starting = 0
        self.provisioned = 0  # how many to keep warm (provisioned concurrency)
        self.retired = False

    def acquire(self) -> tuple[Worker, bool]:
        """A worker for one invocation and whether it was a cold start."""
        with self._lock:
            while self._idle:
                worker = self._idle.pop()  # most recently used: the warmest
                if worker.alive():
                    self._busy.add(worker)
                    return worker, False
                worker.kill()
            self._starting += 1
        worker = self._start_counted()
        with self._lock:
            self._busy.add(worker)
        return worker, True

    def _start_counted(self) -> Worker:
        """Start a worker for which ``_starting`` was counted up (under the lock); count it down."""
        try:
            return self._start_worker()
        finally:
            with self._lock:
                self._starting -= 1

    def release(self, worker: Worker) -> None:
        """Give a worker back; dead ones, and any of a retired pool, are discarded."""
        with self._lock:
            self._busy.discard(worker)
            keep = worker.alive() and not self.retired
            if keep:
                self._idle.append(worker)
        if not keep:
            worker.kill()

    def warm(self, count: int) -> list[Worker]:
        """Start workers until ``count`` exist; returns the new ones (their init logs are unread)."""
        started = []
        for _ in range(count):  # bounded: never more than ``count`` starts
            with self._lock:
                if self.retired or len(self._idle) + len(self._busy) + self._starting >= count:
                    break
                self._starting += 1
            worker = self._start_counted()
            with self._lock:
                if self.retired:
                    worker.kill()
                    break
                self._idle.append(worker)
            started.append(worker)
        return started

    def reap(self, idle_seconds: float) -> None:
        """Stop dead workers and idle ones unused for ``idle_seconds``, keeping ``provisioned``."""
        now = time.monotonic()
        with self._lock:
            dead = [w for w in self._idle if not w.alive()]
            live = [w for w in self._idle if w.alive()]
            spare = max(len(live) + len(self._busy) - self.provisioned, 0)
            oldest_first = sorted(live, key=lambda w: w.last_used)
            stale = [w for w in oldest_first if now - w.last_used >= idle_seconds][:spare]
            self._idle = [w for w in live if w not in stale]
        for worker in dead + stale:
            worker.kill()

    def retire(self) -> None:
        """Stop idle workers now and busy ones when they finish (the version's config changed)."""
        with self._lock:
            self.retired = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def close(self) -> None:
        """Kill every worker, busy or not (shutdown, function deleted)."""
        with self._lock:
            self.retired = True
            workers = [*self._idle, *self._busy]
            self._idle, self._busy = [], set()
        for worker in workers:
            worker.kill()

    def size(self) -> int:
        with self._lock:
            return sum(1 for w in [*self._idle, *self._busy] if w.alive())

    def pids(self) -> list[int]:
        with self._lock:
            return sorted(w.pid for w in [*self._idle, *self._busy] if w.alive())

    def drained(self) -> bool:
        with self._lock:
            return not self._idle and not self._busy and not self._starting
