"""What ``make demo`` and ``make bench`` print while they work: a live rich display on a terminal,
plain lines stamped with the elapsed time otherwise (piped, in CI), so a log file tells the same
story one line per change.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# Wide enough for the summary tables when there is no terminal to ask.
PLAIN_WIDTH = 120


def stamp(elapsed: float, text: str) -> str:
    """A plain progress line: ``[    12 s] text``."""
    return f"[{elapsed:6.0f} s] {text}"


class Terminal:
    """Live display or plain lines, decided once (``live=None``: whether stdout is a terminal)."""

    def __init__(self, live: bool | None = None):
        self.live = sys.stdout.isatty() if live is None else live
        self.started = time.perf_counter()
        self._console: Any = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = (
                Console(highlight=False) if self.live else Console(width=PLAIN_WIDTH, no_color=True)
            )
        return self._console

    @contextmanager
    def showing(self, renderable: Callable[[], Any]) -> Iterator[Terminal]:
        """On a terminal, keep ``renderable()`` redrawn at the bottom while the block runs
        (what ``line`` and ``print`` write scrolls above it); otherwise nothing to draw."""
        if not self.live:
            yield self
            return
        from rich.live import Live

        with Live(get_renderable=renderable, console=self.console, refresh_per_second=4):
            yield self

    def line(self, text: str) -> None:
        """One progress line: kept in the scrollback on a terminal, stamped when plain."""
        if self.live:
            self.console.print(text, markup=False)
        else:
            print(stamp(self.elapsed(), text), flush=True)

    def print(self, *renderables: Any) -> None:
        """Text or rich renderables (tables) as they are."""
        if all(isinstance(r, str) for r in renderables) and not self.live:
            print(*renderables, flush=True)
        else:
            self.console.print(*renderables, markup=False)
