"""The ``[timing]`` phase lines a training job prints, read with the module that defines them.

``model_scripts/training_telemetry.py`` is the one definition of the format (train.py writes it);
local_aws ships beside ``model_scripts/`` (in the repository and in the local-aws image), so it
loads that module by path instead of repeating its regex.
"""

from __future__ import annotations

import importlib.util
import logging
from functools import cache
from pathlib import Path
from types import ModuleType

log = logging.getLogger("local_aws.training")

TELEMETRY_MODULE = Path(__file__).resolve().parents[4] / "model_scripts" / "training_telemetry.py"


@cache
def _telemetry() -> ModuleType | None:
    if not TELEMETRY_MODULE.is_file():
        log.warning("%s not found: [timing] lines will not be read", TELEMETRY_MODULE)
        return None
    spec = importlib.util.spec_from_file_location("training_telemetry", TELEMETRY_MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def phase_seconds(log_text: str) -> dict[str, float]:
    """Seconds per phase from a job's log, in the order a job goes through them."""
    telemetry = _telemetry()
    return dict(telemetry.parse_timings(log_text)) if telemetry else {}
