"""One shipper of log lines to CloudWatch Logs, for every process local_aws runs.

Training jobs, model servers and Lambda workers write lines; the shipper sends them from a
background thread, as the CloudWatch agent in AWS's containers does, within the limits of
``PutLogEvents``: at most 10,000 events and 1,048,576 bytes (each message plus 26) per call,
in chronological order within a call, no empty message (one empty message makes CloudWatch
reject the whole batch), no event over 256 KB. The log group and stream are created on first
use. Logs are best effort: a failure is logged and the lines dropped; nobody waits on them
except :meth:`LogShipper.flush`, which a job calls before it reports itself finished.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("local_aws.cloudwatch_logs")

MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
MAX_MESSAGE_BYTES = 262_144 - EVENT_OVERHEAD_BYTES
LINGER_SECONDS = 0.2  # gather lines this long after the first one before sending
MAX_QUEUED = 100_000


@dataclass(frozen=True)
class LogEvent:
    group: str
    stream: str
    timestamp_ms: int
    message: str


@dataclass(frozen=True)
class _Open:
    """Create a stream now, before its first line (a job's stream exists while it is quiet)."""

    group: str
    stream: str


_Item = LogEvent | _Open | threading.Event | None  # an Event is a flush marker, None the end


class LogShipper:
    """Queue lines with :meth:`put`; a thread ships them. ``client_factory`` makes a Logs client."""

    def __init__(self, client_factory: Callable[[], Any], name: str = "cloudwatch-logs"):
        self._client_factory = client_factory
        self._client: Any = None
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=MAX_QUEUED)
        self._groups: set[str] = set()
        self._streams: set[tuple[str, str]] = set()
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- what producers call ------------------------------------------------------------
    def open_stream(self, group: str, stream: str) -> None:
        self._enqueue(_Open(group, stream))

    def put(self, group: str, stream: str, message: str, timestamp_ms: int | None = None) -> None:
        """Queue one line (blank ones are dropped); never blocks the caller."""
        if message.strip():
            stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
            self._enqueue(LogEvent(group, stream, stamp, message))

    def put_text(self, group: str, stream: str, text: str) -> None:
        """Queue every line of ``text`` with one timestamp (one invocation's report, say)."""
        stamp = int(time.time() * 1000)
        for line in text.splitlines():
            self.put(group, stream, line, stamp)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued before this call was sent (or given up on)."""
        marker = threading.Event()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop the thread."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _enqueue(self, item: _Item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped += 1
            if self._dropped in (1, 1000) or self._dropped % 100_000 == 0:
                log.warning("CloudWatch Logs queue full: %d lines dropped so far", self._dropped)

    # -- the shipping thread --------------------------------------------------------------
    def _run(self) -> None:
        done = False
        while not done:
            first = self._queue.get()
            items = [first]
            deadline = time.monotonic() + LINGER_SECONDS
            while (
                items[-1] is not None
                and not isinstance(items[-1], threading.Event)
                and len(items) < MAX_BATCH_EVENTS
                and time.monotonic() < deadline
            ):
                try:
                    items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            done = items[-1] is None
            self._ship([item for item in items if isinstance(item, LogEvent | _Open)])
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()

    def _ship(self, items: list[LogEvent | _Open]) -> None:
        by_stream: dict[tuple[str, str], list[LogEvent]] = {}
        for item in items:
            events = by_stream.setdefault((item.group, item.stream), [])
            if isinstance(item, LogEvent):
                events.append(item)
        for (group, stream), events in by_stream.items():
            try:
                client = self._client = self._client or self._client_factory()
                self._ensure_stream(client, group, stream)
                for batch in batches(events):
                    client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
            except Exception as error:  # best effort: the work that wrote the lines goes on
                log.warning("could not ship %d log lines to %s %s: %s", len(events), group, stream, error)

    def _ensure_stream(self, client: Any, group: str, stream: str) -> None:
        if (group, stream) in self._streams:
            return
        exists = client.exceptions.ResourceAlreadyExistsException
        if group not in self._groups:
            with contextlib.suppress(exists):
                client.create_log_group(logGroupName=group)
            self._groups.add(group)
        with contextlib.suppress(exists):
            client.create_log_stream(logGroupName=group, logStreamName=stream)
        self._streams.add((group, stream))


def batches(events: list[LogEvent]) -> Iterator[list[dict[str, Any]]]:
    """PutLogEvents batches of ``events`` in chronological order, within the call's limits."""
    batch: list[dict[str, Any]] = []
    size = 0
    for event in sorted(events, key=lambda e: e.timestamp_ms):  # stable: equal stamps keep their order
        message = _truncated(event.message)
        cost = len(message.encode()) + EVENT_OVERHEAD_BYTES
        if batch and (len(batch) == MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append({"timestamp": event.timestamp_ms, "message": message})
        size += cost
    if batch:
        yield batch


def _truncated(message: str) -> str:
    encoded = message.encode()
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return message
    return encoded[:MAX_MESSAGE_BYTES].decode("utf-8", errors="ignore")
