"""What `python -m bench` shows while it runs: a live rich display on a terminal, plain lines otherwise.

On a terminal: one row per section (spinner, state, elapsed), the current step
of the running section, and an overall elapsed clock; log lines scroll above
it. Piped or in CI (stdout not a terminal): the same steps as plain lines
prefixed with the elapsed time, so a log file reads the same story. The
live-or-plain choice and the line format are the demo's too (``local_aws.devtools.terminal``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from local_aws.devtools.terminal import Terminal


class BenchProgress:
    def __init__(self, sections: list[str], live: bool | None = None):
        self.sections = sections
        self.terminal = Terminal(live)
        self.live = self.terminal.live
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def elapsed(self) -> float:
        return self.terminal.elapsed()

    @contextmanager
    def running(self) -> Iterator[BenchProgress]:
        if not self.live:
            yield self
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        progress = Progress(
            SpinnerColumn(finished_text="[green]done"),
            TextColumn("[bold]{task.fields[section]:<14}"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=self.terminal.console,
        )
        for name in self.sections:
            self._tasks[name] = progress.add_task("waiting", section=name, total=1, start=False)
        self._progress = progress
        try:
            with self.terminal.showing(lambda: progress):
                yield self
        finally:
            self._progress = None

    def start(self, section: str) -> None:
        if self._progress is not None:
            self._progress.start_task(self._tasks[section])
            self._progress.update(self._tasks[section], description="starting")
        else:
            self.terminal.line(f"-- {section} ...")

    def step(self, section: str, text: str) -> None:
        """A section's progress line: shown as its current step, and kept in the scrollback."""
        if self._progress is not None:
            self._progress.update(self._tasks[section], description=text.strip()[:100])
        self.terminal.line(text)

    def finish(self, section: str, summary: str) -> None:
        if self._progress is not None:
            self._progress.update(self._tasks[section], description=summary, completed=1)
            self._progress.stop_task(self._tasks[section])
        else:
            self.terminal.line(f"-- {section}: {summary}")

    def print(self, text: str) -> None:
        self.terminal.print(text)
