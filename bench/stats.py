"""Latency statistics and interleaved timing: baseline and ours alternate in blocks."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    count: int
    p50_ms: float
    p90_ms: float
    mean_ms: float
    best_ms: float

    @property
    def per_second(self) -> float:
        """Sequential batch-1 throughput: one request after another."""
        return 1000.0 / self.mean_ms

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "per_second": self.per_second}


def summarize(seconds: Sequence[float]) -> LatencyStats:
    if not seconds:
        raise ValueError("no timings to summarize")
    milliseconds = np.asarray(seconds, dtype=np.float64) * 1000.0
    return LatencyStats(
        count=len(milliseconds),
        p50_ms=float(np.percentile(milliseconds, 50)),
        p90_ms=float(np.percentile(milliseconds, 90)),
        mean_ms=float(milliseconds.mean()),
        best_ms=float(milliseconds.min()),
    )


@dataclass
class TimedRun:
    seconds: list[float]
    outputs: list[Any]


def interleaved(
    paths: dict[str, Callable[[Any], Any]], items: Sequence[Any], block: int
) -> dict[str, TimedRun]:
    """Run every item through every path, switching path every ``block`` items.

    Each block starts with one untimed call: the first call after a switch pays
    for the other runtime's threads still spinning and for cold caches, which
    is a cost of the bench, not of either path.
    """
    runs = {name: TimedRun([], []) for name in paths}
    for start in range(0, len(items), block):
        chunk = items[start : start + block]
        for name, path in paths.items():
            path(chunk[0])
            for item in chunk:
                began = time.perf_counter()
                output = path(item)
                runs[name].seconds.append(time.perf_counter() - began)
                runs[name].outputs.append(output)
    return runs


def best_seconds(action: Callable[[], Any], repeats: int) -> float:
    """Fastest of ``repeats`` calls after one warm-up: the machine's best case, for peaks."""
    action()
    fastest = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        action()
        fastest = min(fastest, time.perf_counter() - began)
    return fastest
