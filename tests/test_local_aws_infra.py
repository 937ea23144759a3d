"""local_aws's shared machinery: CloudWatch log shipping, process groups, background work, ports."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from local_aws.infra.background import every, in_background
from local_aws.infra.cloudwatch_logs import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES, LogEvent, LogShipper, batches
from local_aws.infra.ports import free_port
from local_aws.infra.processes import ProcessGroup, stop_all


# -- CloudWatch Logs -------------------------------------------------------------------------------------
def events(count: int, size: int = 10, stamp: int = 1) -> list[LogEvent]:
    return [LogEvent("g", "s", stamp, "x" * size) for _ in range(count)]


def test_batches_stay_within_put_log_events_limits() -> None:
    by_count = list(batches(events(25_000)))
    assert [len(batch) for batch in by_count] == [10_000, 10_000, 5_000]
    by_size = list(batches(events(300, size=10_000)))
    assert len(by_size) == 3
    assert all(sum(len(e["message"]) + 26 for e in batch) <= MAX_BATCH_BYTES for batch in by_size)


def test_batches_are_chronological_and_oversize_messages_truncated() -> None:
    mixed = [LogEvent("g", "s", 3, "late"), LogEvent("g", "s", 1, "first"), LogEvent("g", "s", 1, "second")]
    [batch] = list(batches(mixed))
    assert [e["message"] for e in batch] == ["first", "second", "late"]  # equal stamps keep their order
    [[huge]] = list(batches([LogEvent("g", "s", 1, "é" * MAX_MESSAGE_BYTES)]))
    assert len(huge["message"].encode()) <= MAX_MESSAGE_BYTES


class FakeLogs:
    """Records what a boto3 Logs client would be asked; fails put_log_events when told to."""

    class exceptions:
        class ResourceAlreadyExistsException(Exception):
            pass

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.created: list[tuple[str, ...]] = []
        self.sent: list[dict[str, Any]] = []

    def create_log_group(self, logGroupName: str) -> None:
        self.created.append(("group", logGroupName))

    def create_log_stream(self, logGroupName: str, logStreamName: str) -> None:
        self.created.append(("stream", logGroupName, logStreamName))

    def put_log_events(self, **call: Any) -> None:
        if self.fail:
            raise RuntimeError("CloudWatch is down")
        self.sent.append(call)


def test_the_shipper_drops_blank_lines_creates_streams_once_and_flushes() -> None:
    fake = FakeLogs()
    shipper = LogShipper(lambda: fake)
    shipper.open_stream("g", "quiet")
    shipper.put("g", "s", "one")
    shipper.put("g", "s", "   ")
    shipper.put_text("g", "s", "two\n\nthree\n")
    assert shipper.flush(timeout=10)
    shipper.put("g", "s", "four")
    shipper.close()

    messages = [e["message"] for call in fake.sent for e in call["logEvents"]]
    assert messages == ["one", "two", "three", "four"]
    assert fake.created == [("group", "g"), ("stream", "g", "quiet"), ("stream", "g", "s")]


def test_shipping_is_best_effort(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="local_aws.cloudwatch_logs")
    shipper = LogShipper(lambda: FakeLogs(fail=True))
    shipper.put("g", "s", "lost")
    assert shipper.flush(timeout=10)  # the failure is logged, not raised, and flush still returns
    shipper.close()
    assert any("CloudWatch is down" in record.getMessage() for record in caplog.records)


# -- process groups ------------------------------------------------------------------------------------
def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def python(code: str, **kwargs: Any) -> ProcessGroup:
    return ProcessGroup([sys.executable, "-c", code], name="test", **kwargs)


def test_output_is_pumped_line_by_line_stderr_apart() -> None:
    out: list[str] = []
    err: list[str] = []
    group = python("import sys; print('a'); print('b', file=sys.stderr); print('c')", stdout=out.append,
                   stderr=err.append).start()  # fmt: skip
    assert group.wait(30) == 0
    group.join_output()
    assert (out, err) == (["a", "c"], ["b"])


def test_stop_kills_a_group_that_ignores_sigterm_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    ready = threading.Event()
    group = python(code, stdout=lambda line: ready.set()).start()
    assert ready.wait(30)
    child = int(pid_file.read_text())

    started = time.monotonic()
    group.stop(grace=0.5)

    assert time.monotonic() - started < 10
    assert group.exit_status() == "signal: kill"
    deadline = time.monotonic() + 5
    while alive(child):
        assert time.monotonic() < deadline, "the child outlived its group"
        time.sleep(0.05)


def test_start_again_restarts_and_stop_all_ends_every_group() -> None:
    group = python("import sys; sys.exit(3)").start()
    assert group.wait(30) == 3 and group.exit_status() == "exit status 3"
    group.command = [sys.executable, "-c", "import time; time.sleep(60)"]
    group.start()
    assert group.starts == 2 and group.running
    other = python("import time; time.sleep(60)").start()
    stop_all([group, other], grace=5)
    assert not group.running and not other.running
    assert group.returncode == other.returncode == -15  # SIGTERM was enough


def test_a_group_is_swept_once_when_its_leader_exits_and_never_signalled_again(monkeypatch) -> None:
    """PIDs wrap around fast on a busy machine: a stale group number may lead someone else's group."""
    group = python("import sys; sys.exit(0)").start()
    assert group.wait(30) == 0
    signalled: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda pid, signum: signalled.append((pid, signum)))
    group.send_signal(signal.SIGTERM)
    group.kill()
    group.stop(grace=1)
    assert group.returncode == 0 and not group.running
    assert signalled == []  # the sweep happened when wait() first saw the exit, before the patch


def test_output_to_a_file(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "out.log"
    group = python(
        "import sys; print('to the file'); print('and stderr', file=sys.stderr)", stdout=log
    ).start()
    assert group.wait(30) == 0
    assert log.read_text().splitlines() == ["to the file", "and stderr"]


# -- background work and ports -------------------------------------------------------------------------
def test_background_failures_are_logged_and_periodic_work_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="local_aws.background")
    in_background("doomed", lambda: 1 / 0).join(10)
    rounds: list[int] = []
    stop = threading.Event()

    def flaky() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise RuntimeError("first round fails")

    thread = every(0.01, "flaky", flaky, stop)
    deadline = time.monotonic() + 10
    while len(rounds) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stop.set()
    thread.join(10)
    failures = [r for r in caplog.records if r.exc_info]
    assert {r.exc_info[0] for r in failures} == {ZeroDivisionError, RuntimeError}


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 1024 < port < 65536
