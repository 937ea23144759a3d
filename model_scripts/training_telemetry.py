"""What a training job leaves for others to read: ``[metrics]`` lines, ``[timing]`` lines and
``evaluation.json``.

``[metrics] key=value ...`` lines are scraped by SageMaker with the regexes in
``plugins/dog_breed/metrics.py`` (this module runs alone in a container, so it
repeats the key names; a test runs train.py and checks every regex matches).

``[timing] phase=<name> seconds=<s>`` lines say where a job's time went, one
line per phase, printed when the job ends. This module is the one definition
of that format: ``train.py`` writes it, and the job runner (which adds the
``download`` and ``upload`` phases it measures itself) and the demo summary
read it with ``parse_timings``.

``evaluation.json`` (``EVALUATION_FILE``, in ``SM_OUTPUT_DATA_DIR``, so SageMaker puts it in
``output.tar.gz`` beside ``model.tar.gz``) is the final job's test set per class: images and
correct answers (``evaluation_record``). The pipeline turns it into the model registry's
per-breed accuracy report. Standard library only, so anything with ``model_scripts/`` on its
path (the Airflow plugin too, ``dog_breed.packaging.model_script``) can import it without torch.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

TIMING_LINE_PREFIX = "[timing]"
# In the order a job goes through them; download and upload are the runner's (channels in, model out).
JOB_PHASES = ("download", "start", "data", "train", "evaluate", "checkpoint", "save", "export", "upload")
EVALUATION_FILE = "evaluation.json"
TIMING_LINE = re.compile(r"^\[timing\] phase=(?P<phase>[a-z_]+) seconds=(?P<seconds>[0-9]+\.[0-9]+)$")


def format_metrics(**values: float | int) -> str:
    """One ``[metrics]`` line: integers as they are, floats to four decimals."""
    parts = [
        f"{key}={value}" if isinstance(value, int) else f"{key}={value:.4f}" for key, value in values.items()
    ]
    return "[metrics] " + " ".join(parts)


def print_metrics(**values: float | int) -> None:
    print(format_metrics(**values), flush=True)


def evaluation_record(
    split: str, loss: float, classes: Sequence[str], correct: Sequence[int], total: Sequence[int]
) -> dict[str, Any]:
    """What ``EVALUATION_FILE`` holds: the split's loss and accuracy, and per class its images
    and how many the model got right."""
    if not len(classes) == len(correct) == len(total):
        raise ValueError(f"{len(classes)} classes but {len(correct)} correct and {len(total)} total counts")
    images = sum(total)
    return {
        "split": split,
        "loss": loss,
        "accuracy": sum(correct) / images if images else 0.0,
        "images": images,
        "per_class": [
            {"class": name, "correct": int(hits), "total": int(count)}
            for name, hits, count in zip(classes, correct, total, strict=True)
        ],
    }


def format_timing(phase: str, seconds: float) -> str:
    if phase not in JOB_PHASES:
        raise ValueError(f"unknown job phase {phase!r}; phases are {JOB_PHASES}")
    return f"{TIMING_LINE_PREFIX} phase={phase} seconds={max(seconds, 0.0):.3f}"


def parse_timings(log_text: str) -> dict[str, float]:
    """Seconds per phase from a job's log (lines may carry a timestamp prefix), in JOB_PHASES order."""
    found: dict[str, float] = {}
    for line in log_text.splitlines():
        start = line.find(TIMING_LINE_PREFIX)
        match = TIMING_LINE.match(line[start:].rstrip()) if start >= 0 else None
        if match and match["phase"] in JOB_PHASES:
            found[match["phase"]] = found.get(match["phase"], 0.0) + float(match["seconds"])
    return {phase: found[phase] for phase in JOB_PHASES if phase in found}


class PhaseTimer:
    """Adds up wall time per phase; ``start`` runs from ``started`` (the top of train.py) to ``begin()``."""

    def __init__(self, started: float | None = None):
        self._started = time.perf_counter() if started is None else started
        self.seconds: dict[str, float] = {}

    def begin(self) -> None:
        """Start-up (imports, arguments, cluster rendezvous) ends here."""
        self.seconds["start"] = self.seconds.get("start", 0.0) + time.perf_counter() - self._started

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in JOB_PHASES:
            raise ValueError(f"unknown job phase {name!r}")
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began

    def lines(self) -> list[str]:
        return [format_timing(name, self.seconds[name]) for name in JOB_PHASES if name in self.seconds]

    def print(self) -> None:
        print("\n".join(self.lines()), flush=True)
