"""Background work in daemon threads: an exception is logged with its traceback, never lost."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("local_aws.background")


def in_background(name: str, work: Callable[[], object]) -> threading.Thread:
    """Run ``work`` once in a daemon thread called ``name``; returns the started thread."""
    return _daemon(name, lambda: _logged(name, work, "background task %s failed"))


def every(interval: float, name: str, work: Callable[[], object], stop: threading.Event) -> threading.Thread:
    """Call ``work`` every ``interval`` seconds until ``stop`` is set; a failing round is logged
    and the next one runs anyway (a passing fault must not end the housekeeping for good)."""

    def loop() -> None:
        while not stop.wait(interval):
            _logged(name, work, "periodic task %s failed; trying again next round")

    return _daemon(name, loop)


def _logged(name: str, work: Callable[[], object], message: str) -> None:
    try:
        work()
    except Exception:
        log.exception(message, name)


def _daemon(name: str, target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
