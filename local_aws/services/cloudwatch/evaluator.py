"""What CloudWatch does with metric alarms, which moto only records: evaluate them.

In the background, every :data:`TICK_SECONDS` of simulated time, each metric alarm in moto's
store whose latest period has closed is evaluated over its last ``EvaluationPeriods`` periods
(:mod:`.evaluation`), and its state, reason, reason data and history set as CloudWatch sets
them when the state changes. A period of ``Period`` simulated seconds lasts ``Period / scale``
real seconds (:mod:`local_aws.infra.clock`); a period is evaluated once it closed
:data:`LATE_DATA_SECONDS` ago, so the minute's metrics published at its end are in.

Not evaluated (left as moto keeps them): composite alarms, anomaly-detection bands, metric
math beyond arithmetic and ``FILL``; percentiles of statistic sets are missing datapoints.
moto does not serve DescribeAlarmHistory; the history is kept on moto's alarm records.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from local_aws.infra.background import every
from local_aws.services.base import Context, Service
from local_aws.services.cloudwatch.evaluation import Decision, decide
from local_aws.services.cloudwatch.moto_store import (
    AlarmPlan,
    AlarmTable,
    SampleIndex,
    compile_alarm,
    moto_backend,
)

log = logging.getLogger("local_aws.cloudwatch")

TICK_SECONDS = 15.0  # simulated seconds between rounds
LATE_DATA_SECONDS = 30.0  # a period is evaluated this long (simulated) after it closed


@dataclass
class _Tracked:
    alarm: Any  # moto's record; PutMetricAlarm replaces it, which recompiles the plan
    plan: AlarmPlan | None
    evaluated_until: float = 0.0


class AlarmEvaluator(Service):
    """No API of its own (moto serves CloudWatch's); it works in the background."""

    def __init__(self, context: Context):
        super().__init__(context)
        self.index = SampleIndex()
        self._tracked: dict[str, _Tracked] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._install()
        every(context.clock.real(TICK_SECONDS), "cloudwatch-alarms", self.evaluate, self._stop)

    def _backend(self) -> Any:
        return moto_backend(self.context.account_id, self.context.region)

    def _install(self) -> AlarmTable:
        backend = self._backend()
        if not isinstance(backend.alarms, AlarmTable):
            backend.alarms = AlarmTable(backend.alarms, self._evaluable)
        return backend.alarms

    def _evaluable(self, alarm: Any) -> bool:
        return compile_alarm(alarm, self.index) is not None

    def evaluate(self, now: float | None = None) -> None:
        """One round over every alarm (``now``: epoch seconds, for tests)."""
        backend = self._backend()
        alarms = self._install()  # again: a moto reset makes a new table
        self.index.refresh(backend.metric_data)
        moment = time.time() if now is None else now
        with self._lock:
            names = set(alarms)
            for gone in set(self._tracked) - names:
                del self._tracked[gone]
            for name in names:
                alarm = alarms.get(name)
                if alarm is not None:
                    self._evaluate(name, alarm, moment)

    def _evaluate(self, name: str, alarm: Any, now: float) -> None:
        tracked = self._tracked.get(name)
        if tracked is None or tracked.alarm is not alarm:
            tracked = self._tracked[name] = _Tracked(alarm, compile_alarm(alarm, self.index))
        if tracked.plan is None:
            return
        rule, clock = tracked.plan.rule, self.context.clock
        end = clock.period_start(rule.period, now - clock.real(LATE_DATA_SECONDS))
        if end <= tracked.evaluated_until:
            return
        tracked.evaluated_until = end
        length = clock.real(rule.period)
        datapoints = [
            tracked.plan.fetch(end - k * length, end - (k - 1) * length)
            for k in range(1, rule.evaluation_periods + 1)
        ]
        decision = decide(rule, datapoints, alarm.state_value, now)
        if decision.state is not None and decision.state != alarm.state_value:
            self._transition(alarm, decision)

    def latest_value(self, name: str) -> float | None:
        """The datapoint of the alarm's latest evaluated period (what target tracking scales by)."""
        with self._lock:
            tracked = self._tracked.get(name)
        if tracked is None or tracked.plan is None or not tracked.evaluated_until:
            return None
        length = self.context.clock.real(tracked.plan.rule.period)
        return tracked.plan.fetch(tracked.evaluated_until - length, tracked.evaluated_until).value

    @staticmethod
    def _transition(alarm: Any, decision: Decision) -> None:
        log.info("alarm %s: %s -> %s: %s", alarm.name, alarm.state_value, decision.state, decision.reason)
        alarm.update_state(decision.reason, decision.reason_data, decision.state)  # moto keeps the history
        alarm.state_transitioned_timestamp = alarm.state_updated_timestamp

    def shutdown(self) -> None:
        self._stop.set()
