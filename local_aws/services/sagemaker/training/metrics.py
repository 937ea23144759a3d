"""Metrics scraped from a job's log lines with its MetricDefinitions regexes."""

from __future__ import annotations

import datetime as dt
import re
import threading
from typing import Any


class MetricScraper:
    """Applies MetricDefinitions regexes to log lines and keeps each metric's history."""

    def __init__(self, definitions: list[dict[str, str]]):
        self._patterns = [(d["Name"], re.compile(d["Regex"])) for d in definitions]
        self._history: dict[str, list[tuple[dt.datetime, float]]] = {}
        self._lock = threading.Lock()

    def scrape(self, line: str, timestamp: dt.datetime) -> None:
        for name, pattern in self._patterns:
            match = pattern.search(line)
            if not match:
                continue
            try:
                value = float(match.group(1) if pattern.groups else match.group(0))
            except ValueError:
                continue
            with self._lock:
                self._history.setdefault(name, []).append((timestamp, value))

    def history(self) -> dict[str, list[tuple[dt.datetime, float]]]:
        with self._lock:
            return {name: list(points) for name, points in self._history.items()}

    def final_metrics(self) -> list[dict[str, Any]]:
        """FinalMetricDataList: the last value of every metric seen so far."""
        return [
            {"MetricName": name, "Value": points[-1][1], "Timestamp": points[-1][0]}
            for name, points in sorted(self.history().items())
        ]
