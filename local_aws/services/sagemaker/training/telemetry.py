"""The job log's ``[timing] phase=<name> seconds=<s>`` lines, in the one format there is.

``model_scripts/training_telemetry.py`` defines it: train.py writes its own phases, the runner
adds ``download`` and ``upload`` (channels in, model out), the profiler report and the demo
read them all back. That file is container code, not a package local_aws could import, and it
stays standard library only for that reason; so it is loaded from its path. ``model_scripts/``
sits beside ``local_aws/`` in this repository and in the local-aws image (see the Dockerfile).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

TELEMETRY_FILE = Path(__file__).resolve().parents[4] / "model_scripts" / "training_telemetry.py"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("local_aws_training_telemetry", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ModuleNotFoundError(f"local_aws needs {path} (model_scripts/ beside local_aws/)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_telemetry = _load(TELEMETRY_FILE)
JOB_PHASES: tuple[str, ...] = _telemetry.JOB_PHASES
format_timing = _telemetry.format_timing
parse_timings = _telemetry.parse_timings


def phase_seconds(log_text: str) -> dict[str, float]:
    """Seconds per phase from a job's log, in the order a job goes through them."""
    return dict(parse_timings(log_text))
