"""What `python -m bench` shows while it runs: a live rich display on a terminal, plain lines otherwise.

On a terminal: one row per section (spinner, state, elapsed), the current step
of the running section, and an overall elapsed clock; log lines scroll above
it. Piped or in CI (stdout not a terminal): the same steps as plain lines
prefixed with the elapsed time, so a log file reads the same story.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class BenchProgress:
    def __init__(self, sections: list[str], live: bool | None = None):
        self.sections = sections
        self.live = sys.stdout.isatty() if live is None else live
        self.started = time.perf_counter()
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @contextmanager
    def running(self) -> Iterator[BenchProgress]:
        if not self.live:
            yield self
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            SpinnerColumn(finished_text="[green]done"),
            TextColumn("[bold]{task.fields[section]:<14}"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            refresh_per_second=4,
        )
        with self._progress:
            for name in self.sections:
                self._tasks[name] = self._progress.add_task("waiting", section=name, total=1, start=False)
            yield self
        self._progress = None

    def start(self, section: str) -> None:
        if self._progress is not None:
            self._progress.start_task(self._tasks[section])
            self._progress.update(self._tasks[section], description="starting")
        else:
            self._plain(f"-- {section} ...")

    def step(self, section: str, text: str) -> None:
        """A section's progress line: shown as its current step, and kept in the scrollback."""
        if self._progress is not None:
            self._progress.update(self._tasks[section], description=text.strip()[:100])
            self._progress.console.print(text, highlight=False, markup=False)
        else:
            self._plain(text)

    def finish(self, section: str, summary: str) -> None:
        if self._progress is not None:
            self._progress.update(self._tasks[section], description=summary, completed=1)
            self._progress.stop_task(self._tasks[section])
        else:
            self._plain(f"-- {section}: {summary}")

    def print(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, markup=False)
        else:
            print(text, flush=True)

    def _plain(self, text: str) -> None:
        print(f"[{self.elapsed():6.0f} s] {text}", flush=True)
