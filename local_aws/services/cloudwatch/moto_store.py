"""moto's CloudWatch store, read in-process: its samples by series, its alarms as rules to evaluate.

moto serves every CloudWatch operation (PutMetricData, PutMetricAlarm, DescribeAlarms, ...) and
keeps the data; it evaluates nothing, and it starts every alarm ``OK``. This module is the one
place that knows moto's objects (``moto.cloudwatch.models``): it turns them into the plain
values of :mod:`.evaluation`, and gives moto's alarm table AWS's lifecycle (:class:`AlarmTable`).
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from local_aws.services.cloudwatch.evaluation import (
    COMPARISONS,
    INSUFFICIENT_DATA,
    MISSING_TREATMENTS,
    Datapoint,
    Rule,
    Sample,
    evaluate_expression,
    parse_expression,
    statistic,
    supported_statistic,
)

SeriesKey = tuple[str, str, frozenset[tuple[str, str]]]  # namespace, metric name, dimensions
# (period start, period end) -> the datapoint of that period
Fetch = Callable[[float, float], Datapoint]


def moto_backend(account: str, region: str) -> Any:
    from moto.cloudwatch.models import cloudwatch_backends

    return cloudwatch_backends[account][region]


def _epoch(moment: dt.datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def _dimensions(dimensions: Sequence[Any]) -> frozenset[tuple[str, str]]:
    return frozenset((d.name, d.value) for d in dimensions or ())


def _sample(datum: Any) -> Sample:
    timestamp = _epoch(datum.timestamp)
    if hasattr(datum, "value"):
        return Sample.of_value(timestamp, float(datum.value))
    return Sample(timestamp, float(datum.sum), float(datum.sample_count), float(datum.min), float(datum.max))


class SampleIndex:
    """Every sample moto holds, by series and in time order; :meth:`refresh` reads what moto
    appended since the last call (moto's ``metric_data`` only grows)."""

    def __init__(self) -> None:
        self._source: list[Any] | None = None
        self._read = 0
        self._times: dict[SeriesKey, list[float]] = {}
        self._samples: dict[SeriesKey, list[Sample]] = {}
        self._lock = threading.Lock()

    def refresh(self, metric_data: list[Any]) -> None:
        with self._lock:
            if metric_data is not self._source:  # moto was reset
                self._source, self._read, self._times, self._samples = metric_data, 0, {}, {}
            fresh, self._read = metric_data[self._read :], len(metric_data)
            for datum in fresh:
                key = (datum.namespace, datum.name, _dimensions(datum.dimensions))
                sample = _sample(datum)
                times = self._times.setdefault(key, [])
                at = bisect.bisect_right(times, sample.timestamp)
                times.insert(at, sample.timestamp)
                self._samples.setdefault(key, []).insert(at, sample)

    def between(self, key: SeriesKey, start: float, end: float) -> list[Sample]:
        with self._lock:
            times = self._times.get(key, [])
            first, last = bisect.bisect_left(times, start), bisect.bisect_left(times, end)
            return self._samples.get(key, [])[first:last]


@dataclass(frozen=True)
class AlarmPlan:
    """An alarm compiled for evaluation: its rule and how to get one period's datapoint."""

    rule: Rule
    fetch: Fetch


def compile_alarm(alarm: Any, index: SampleIndex) -> AlarmPlan | None:
    """The plan for a moto metric alarm, or None for what local_aws does not evaluate
    (composite alarms, anomaly bands, statistics and functions it lacks): those stay moto's."""
    if alarm.rule is not None or alarm.comparison_operator not in COMPARISONS:
        return None
    if (alarm.treat_missing_data or "missing") not in MISSING_TREATMENTS:
        return None
    try:
        threshold, periods = float(alarm.threshold), int(alarm.evaluation_periods)
        to_alarm = int(alarm.datapoints_to_alarm) if alarm.datapoints_to_alarm else None
    except (TypeError, ValueError):
        return None
    if alarm.metric_data_queries:
        return _compile_metric_math(alarm, index, threshold, periods, to_alarm)
    stat = alarm.extended_statistic or alarm.statistic
    if not supported_statistic(stat) or not alarm.period:
        return None
    key = (alarm.namespace, alarm.metric_name, _dimensions(alarm.dimensions))
    rule = Rule(alarm.comparison_operator, threshold, periods, to_alarm, alarm.treat_missing_data, stat,
                int(alarm.period), extended=bool(alarm.extended_statistic))  # fmt: skip

    def fetch(start: float, end: float) -> Datapoint:
        samples = index.between(key, start, end)
        return Datapoint(start, statistic(samples, stat), sum(s.count for s in samples))

    return AlarmPlan(rule, fetch)


def _compile_metric_math(
    alarm: Any, index: SampleIndex, threshold: float, periods: int, to_alarm: int | None
) -> AlarmPlan | None:
    queries = alarm.metric_data_queries
    # ReturnData defaults to true: the one expression not marked false is what the alarm compares.
    returned = [q for q in queries if q.expression and str(q.return_data).lower() != "false"]
    stats = {q.id: q.metric_stat for q in queries if q.metric_stat is not None}
    if len(returned) != 1 or not stats or any(not supported_statistic(s.stat) for s in stats.values()):
        return None
    try:
        tree = parse_expression(returned[0].expression)
        period = max(int(s.period) for s in stats.values())
    except (TypeError, ValueError):
        return None
    keys = {
        query_id: ((s.metric.namespace, s.metric.metric_name, _dimensions(s.metric.dimensions)), s.stat)
        for query_id, s in stats.items()
    }
    rule = Rule(alarm.comparison_operator, threshold, periods, to_alarm, alarm.treat_missing_data,
                returned[0].id, period)  # fmt: skip

    def fetch(start: float, end: float) -> Datapoint:
        values = {name: statistic(index.between(key, start, end), stat) for name, (key, stat) in keys.items()}
        try:
            value = evaluate_expression(tree, values)
        except ValueError:
            value = None
        return Datapoint(start, value, 0.0)

    return AlarmPlan(rule, fetch)


class AlarmTable(dict):
    """moto's ``alarms`` dict with AWS's lifecycle for the alarms local_aws evaluates: a new one
    starts ``INSUFFICIENT_DATA`` ("Unchecked: Initial alarm creation"), and PutMetricAlarm on an
    existing one replaces its configuration but keeps its state, reason and history."""

    KEPT = ("state_value", "state_reason", "state_reason_data", "state_updated_timestamp", "history",
            "state_transitioned_timestamp")  # fmt: skip

    def __init__(self, alarms: dict[str, Any], evaluable: Callable[[Any], bool]):
        super().__init__(alarms)
        self._evaluable = evaluable

    def __setitem__(self, name: str, alarm: Any) -> None:
        previous = self.get(name)
        if previous is not None and previous is not alarm:
            for attribute in self.KEPT:
                if hasattr(previous, attribute):
                    setattr(alarm, attribute, getattr(previous, attribute))
        elif previous is None and self._evaluable(alarm):
            alarm.state_value = INSUFFICIENT_DATA
        super().__setitem__(name, alarm)
