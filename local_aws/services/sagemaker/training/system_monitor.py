"""Each training instance's CPU, memory and disk I/O, written where SageMaker's system profiler writes them.

An instance here is a process group (the entry point and its children). Every
``ProfilingIntervalInMilliseconds`` the monitor samples each group with psutil and appends
JSON lines shaped as Debugger's system metrics to one file per instance and minute,
``profiler-output/system/incremental/<YYYYMMDDHH>/<epoch second of the minute>.<host>.json``
under ``<ProfilerConfig.S3OutputPath>/<job>/``::

    {"Name": "cpu0", "Type": "cpu", "Timestamp": 1700000000.5, "Value": 87.5,
     "Dimension": "CPUUtilization", "NodeId": "algo-1"}
    {"Name": "MemoryUsedPercent", "Type": "memory", ..., "Dimension": "", "NodeId": "algo-1"}
    {"Name": "ReadThroughputInBytesPerSecond", "Type": "i/o", ..., "Dimension": "", "NodeId": "algo-1"}
    {"Name": "WriteThroughputInBytesPerSecond", "Type": "i/o", ...}

What the values mean on a machine shared by every instance (and by whatever else runs):

* ``CPUUtilization`` of ``cpuN``: CPU time the group's threads used in the interval, charged to
  the core each thread last ran on, as a percentage of the interval.
* ``MemoryUsedPercent``: the group's proportional set size (shared pages split among the
  processes sharing them) as a percentage of the machine's memory.
* ``Read/WriteThroughputInBytesPerSecond``: bytes the group made the storage layer read or write
  (a read served by the page cache reads nothing).

Not sampled, because nothing measures them per process group: ``I/OWaitPercentage`` (needs the
kernel's delay accounting, off by default), ``IOPS``, network (the instances talk over loopback)
and GPUs (there are none). The files go to S3 every upload interval and once more at the end,
followed by the ``system/training_job_end.ts`` marker smdebug's readers wait for.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

from local_aws.infra.background import every
from local_aws.infra.processes import ProcessGroup
from local_aws.infra.s3 import split_s3_uri

SYSTEM_DIR = "system"
INCREMENTAL_DIR = f"{SYSTEM_DIR}/incremental"
END_MARKER = f"{SYSTEM_DIR}/training_job_end.ts"  # smdebug's END_OF_JOB_FILENAME under the trial's system/
READ_THROUGHPUT = "ReadThroughputInBytesPerSecond"
WRITE_THROUGHPUT = "WriteThroughputInBytesPerSecond"
MEMORY_USED = "MemoryUsedPercent"
CPU_UTILIZATION = "CPUUtilization"
_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


class Instance(Protocol):
    """A training instance: its host name and the process group its entry point leads."""

    host: str
    group: ProcessGroup


@dataclass(frozen=True)
class GroupSample:
    """What one process group used between two samples."""

    timestamp: float  # epoch seconds, the end of the interval
    seconds: float  # length of the interval
    core_seconds: Mapping[int, float]  # CPU seconds charged to each core
    cores: int
    memory_percent: float
    read_bytes: int
    write_bytes: int


def records(host: str, sample: GroupSample) -> list[dict[str, Any]]:
    """The Debugger system-metric records of one sample, one per metric (and per core)."""

    def record(name: str, kind: str, value: float, dimension: str = "") -> dict[str, Any]:
        return {
            "Name": name,
            "Type": kind,
            "Timestamp": round(sample.timestamp, 6),
            "Value": round(value, 2),
            "Dimension": dimension,
            "NodeId": host,
        }

    seconds = max(sample.seconds, 1e-6)
    found = [
        record(MEMORY_USED, "memory", sample.memory_percent),
        record(READ_THROUGHPUT, "i/o", sample.read_bytes / seconds),
        record(WRITE_THROUGHPUT, "i/o", sample.write_bytes / seconds),
    ]
    for core in range(sample.cores):
        busy = min(100.0, 100.0 * sample.core_seconds.get(core, 0.0) / seconds)
        found.append(record(f"cpu{core}", "cpu", busy, CPU_UTILIZATION))
    return found


def metrics_file(host: str, timestamp: float) -> str:
    """A sample's file, by when it was taken: ``system/incremental/<YYYYMMDDHH>/<minute>.<host>.json``."""
    minute = int(timestamp) // 60 * 60
    hour = dt.datetime.fromtimestamp(minute, dt.UTC).strftime("%Y%m%d%H")
    return f"{INCREMENTAL_DIR}/{hour}/{minute}.{host}.json"


class GroupSampler:
    """Samples one process group: CPU time per core, memory and disk bytes since the last sample."""

    def __init__(self, leader_pid: int):
        self.leader = psutil.Process(leader_pid)
        self.started = self.leader.create_time()
        self._last = self.started  # the first sample covers the group's life so far
        self._thread_seconds: dict[int, float] = {}
        self._io: dict[int, tuple[int, int]] = {}
        self._memory_total = psutil.virtual_memory().total
        self._cores = psutil.cpu_count() or 1

    def sample(self) -> GroupSample | None:
        """None once the leader has gone (its PID may already be someone else's)."""
        if not self.leader.is_running():
            return None
        try:
            processes = [self.leader, *self.leader.children(recursive=True)]
        except _GONE:
            return None
        charged: dict[int, float] = defaultdict(float)
        thread_seconds: dict[int, float] = {}
        io: dict[int, tuple[int, int]] = {}
        pss = read = write = 0
        for process in processes:
            try:
                with process.oneshot():
                    threads = process.threads()
                    counters = process.io_counters()
                    pss += process.memory_full_info().pss
            except _GONE:
                continue  # exited between listing and reading
            for thread in threads:
                used = thread.user_time + thread.system_time
                thread_seconds[thread.id] = used
                spent = used - self._thread_seconds.get(thread.id, 0.0)
                core = _core_of(thread.id)
                if spent > 0 and core is not None:
                    charged[core] += spent
            io[process.pid] = (counters.read_bytes, counters.write_bytes)
            before = self._io.get(process.pid, (0, 0))
            read += max(0, counters.read_bytes - before[0])
            write += max(0, counters.write_bytes - before[1])
        now = time.time()
        sample = GroupSample(
            timestamp=now,
            seconds=now - self._last,
            core_seconds=dict(charged),
            cores=self._cores,
            memory_percent=100.0 * pss / self._memory_total,
            read_bytes=read,
            write_bytes=write,
        )
        self._last, self._thread_seconds, self._io = now, thread_seconds, io
        return sample


def _core_of(thread_id: int) -> int | None:
    """The core a thread last ran on (Linux lets a thread's id stand for a process)."""
    try:
        return psutil.Process(thread_id).cpu_num()
    except _GONE:
        return None


class SystemMonitor:
    """Samples every instance's process group into local files at the profiling interval and
    copies new or grown files to ``destination`` (``s3://.../<job>/profiler-output``) every
    ``upload_seconds`` and when stopped. ``instances`` is the runner's list of them, which
    fills as they start."""

    def __init__(
        self,
        *,
        s3: Any,
        destination: str,
        directory: Path,
        instances: Sequence[Instance],
        interval_seconds: float,
        upload_seconds: float,
    ):
        self.s3 = s3
        self.bucket, prefix = split_s3_uri(destination.rstrip("/") + "/")
        self.prefix = prefix.rstrip("/")
        self.directory = directory
        self.instances = instances
        self.interval_seconds = interval_seconds
        self.upload_seconds = upload_seconds
        self.instance_started: dict[str, float] = {}  # host -> when its entry point started
        self._samplers: dict[str, GroupSampler] = {}
        self._uploaded: dict[Path, int] = {}  # file -> size last uploaded
        self._files_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> SystemMonitor:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._threads = [
            every(self.interval_seconds, "profiler-sampler", self.sample_once, self._stop),
            every(self.upload_seconds, "profiler-uploader", self.upload_changed, self._stop),
        ]
        return self

    def stop(self) -> None:
        """Stop sampling; upload what is new and the end-of-job marker (raises if S3 refuses)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.interval_seconds + self.upload_seconds + 30)
        self.upload_changed()
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{END_MARKER}", Body=b"")

    def sample_once(self) -> None:
        for instance in list(self.instances):
            sampler = self._sampler(instance.host, instance.group)
            sample = sampler.sample() if sampler else None
            if sample is not None:
                self._append(instance.host, sample)

    def _sampler(self, host: str, group: ProcessGroup) -> GroupSampler | None:
        sampler = self._samplers.get(host)
        if sampler is None:
            if group.pid is None or not group.running:
                return None
            try:
                sampler = self._samplers[host] = GroupSampler(group.pid)
            except _GONE:
                return None
            self.instance_started.setdefault(host, sampler.started)
        return sampler

    def _append(self, host: str, sample: GroupSample) -> None:
        path = self.directory / metrics_file(host, sample.timestamp)
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records(host, sample))
        with self._files_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as file:
                file.write(lines)

    def upload_changed(self) -> None:
        for path in sorted(self.directory.rglob("*.json")):
            with self._files_lock:  # whole lines only: the sampler appends under the same lock
                body = path.read_bytes()
            if self._uploaded.get(path) == len(body):
                continue
            key = f"{self.prefix}/{path.relative_to(self.directory).as_posix()}"
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
            self._uploaded[path] = len(body)
