"""Background work in daemon threads: an exception is logged with its traceback, never lost."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("local_aws.background")


def in_background(name: str, work: Callable[[], object]) -> threading.Thread:
    """Run ``work`` once in a daemon thread called ``name``; returns the started thread."""

    def run() -> None:
        try:
            work()
        except Exception:
            log.exception("background task %s failed", name)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def every(interval: float, name: str, work: Callable[[], object], stop: threading.Event) -> threading.Thread:
    """Call ``work`` every ``interval`` seconds until ``stop`` is set; a failing round is logged
    and the next one runs anyway (a passing fault must not end the housekeeping for good)."""

    def loop() -> None:
        while not stop.wait(interval):
            try:
                work()
            except Exception:
                log.exception("periodic task %s failed; trying again next round", name)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
