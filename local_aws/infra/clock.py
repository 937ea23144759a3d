"""local_aws's own clock: AWS's minutes, optionally sped up by a time scale.

AWS counts many things in (simulated, here) time: metrics are published every minute, an alarm
looks at periods of 60 s or more, a scaling policy waits out its cooldowns, a blue/green update
waits between traffic steps and before it terminates the old fleet. Offline nobody should wait
real minutes for that, so every such duration goes through one :class:`Clock`, which divides it
by ``scale``: at ``--time-scale 60`` a simulated minute lasts one real second. Scale 1 is
AWS-exact.

What is not simulated stays real: timestamps (CloudWatch datapoints, CreationTime, ...) are
wall-clock times, and real work (a model server starting, a request) takes the time it takes.
Periods are aligned to the epoch in real seconds: the simulated minute ``k`` is the real
interval ``[k * 60 / scale, (k + 1) * 60 / scale)``, which is how the metric publisher, the
alarm evaluator and any reader of ``get-metric-statistics`` (``--period`` of ``60 / scale``
seconds) agree on what a datapoint covers.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass

TIME_SCALE_ENV = "LOCAL_AWS_TIME_SCALE"


@dataclass(frozen=True)
class Clock:
    """Simulated durations (what AWS's APIs say, in seconds) to real ones, and back."""

    scale: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.scale) or self.scale <= 0:
            raise ValueError(f"the time scale must be a positive number, not {self.scale!r}")

    @classmethod
    def from_environment(cls) -> Clock:
        """The scale ``LOCAL_AWS_TIME_SCALE`` asks for (1, AWS-exact, when unset)."""
        raw = os.environ.get(TIME_SCALE_ENV, "").strip()
        try:
            return cls(float(raw)) if raw else cls()
        except ValueError as error:
            raise ValueError(f"{TIME_SCALE_ENV}={raw!r}: {error}") from error

    def real(self, simulated_seconds: float) -> float:
        """How long ``simulated_seconds`` of AWS time last here."""
        return simulated_seconds / self.scale

    def simulated(self, real_seconds: float) -> float:
        """How much AWS time ``real_seconds`` here stand for."""
        return real_seconds * self.scale

    def wait(self, simulated_seconds: float, stop: threading.Event) -> bool:
        """Sleep ``simulated_seconds`` of AWS time; True if ``stop`` was set meanwhile."""
        return stop.wait(max(0.0, self.real(simulated_seconds)))

    def period_start(self, period_seconds: float, at: float | None = None) -> float:
        """Epoch seconds at which the simulated period of ``period_seconds`` holding ``at``
        (default: now) started; periods are aligned to the epoch in real time."""
        length = self.real(period_seconds)
        moment = time.time() if at is None else at
        return math.floor(moment / length) * length
