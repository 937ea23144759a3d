"""Endpoint invocation metrics, published to CloudWatch every minute as SageMaker publishes them.

SageMaker Runtime records each InvokeEndpoint that reached a variant (:meth:`EndpointMetrics.record`);
every simulated minute the minute that closed is put into CloudWatch (namespace ``AWS/SageMaker``,
dimensions ``EndpointName`` and ``VariantName``, timestamp the minute's start), through
PutMetricData to this server (moto stores it):

* ``Invocations``, ``Invocation4XXErrors``, ``Invocation5XXErrors`` and ``InvocationsPerInstance``
  as statistic sets of one sample per request (1, 0/1, 0/1 and 1/instances), so ``Sum`` is the
  count, ``Average`` of an error metric the error rate and ``SampleCount`` the requests;
* ``ModelLatency`` (the container's answer, as the runtime waited for it) and ``OverheadLatency``
  (the rest of the request) in microseconds, as raw values so percentiles (``p99``) can be taken.

A 4XX/5XX error is the container answering 4xx/5xx; a timeout or no instance to answer counts
as 5XX. Like SageMaker, nothing is published for a minute without invocations.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from local_aws.infra.background import every
from local_aws.infra.clock import Clock

log = logging.getLogger("local_aws.hosting.metrics")

NAMESPACE = "AWS/SageMaker"
MINUTE = 60.0
TICK_SECONDS = 10.0  # simulated seconds between looks for closed minutes
MAX_VALUES_PER_DATUM = 150  # PutMetricData: Values/Counts hold at most 150 entries
MAX_DATA_PER_CALL = 1000


@dataclass
class _Minute:
    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    per_instance: list[float] = field(default_factory=list)
    model_latency_us: list[float] = field(default_factory=list)
    overhead_latency_us: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Invocation:
    """One request that reached a variant: how it ended and how long its parts took."""

    status: int  # what the caller learns the container answered (599 for a timeout, 503 for none)
    instances: int  # the variant's instances serving when it was routed
    model_seconds: float | None  # None: no container answered
    total_seconds: float


class EndpointMetrics:
    """The minutes being counted, per endpoint and variant; a background thread publishes them."""

    def __init__(self, clock: Clock, cloudwatch: Any):
        self._clock = clock
        self._cloudwatch = cloudwatch  # a callable returning a CloudWatch client to this server
        self._minutes: dict[tuple[str, str, float], _Minute] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        every(clock.real(TICK_SECONDS), "endpoint-metrics", self.publish, self._stop)

    def record(self, endpoint: str, variant: str, invocation: Invocation) -> None:
        minute_start = self._clock.period_start(MINUTE)
        with self._lock:
            minute = self._minutes.setdefault((endpoint, variant, minute_start), _Minute())
            minute.invocations += 1
            minute.errors_4xx += 400 <= invocation.status < 500
            minute.errors_5xx += invocation.status >= 500
            minute.per_instance.append(1.0 / max(1, invocation.instances))
            if invocation.model_seconds is not None:
                model = invocation.model_seconds * 1e6
                minute.model_latency_us.append(round(model, 1))
                minute.overhead_latency_us.append(round(max(0.0, invocation.total_seconds * 1e6 - model), 1))

    def publish(self, now: float | None = None) -> int:
        """Put every minute that has closed into CloudWatch; returns the minutes published."""
        moment = time.time() if now is None else now
        with self._lock:
            closed = {
                key: self._minutes.pop(key)
                for key in list(self._minutes)
                if key[2] + self._clock.real(MINUTE) <= moment
            }
        data = [datum for key, minute in sorted(closed.items()) for datum in _metric_data(*key, minute)]
        for first in range(0, len(data), MAX_DATA_PER_CALL):
            try:
                self._cloudwatch().put_metric_data(
                    Namespace=NAMESPACE, MetricData=data[first : first + MAX_DATA_PER_CALL]
                )
            except Exception:  # metrics are best effort, as the container agent's are
                log.exception("publishing %d endpoint metrics failed; they are dropped", len(data))
        return len(closed)

    def shutdown(self) -> None:
        self._stop.set()


def _metric_data(
    endpoint: str, variant: str, minute_start: float, minute: _Minute
) -> Iterator[dict[str, Any]]:
    dimensions = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
    base = {"Dimensions": dimensions, "Timestamp": dt.datetime.fromtimestamp(minute_start, dt.UTC)}
    count = minute.invocations
    for name, hits in (
        ("Invocations", count),
        ("Invocation4XXErrors", minute.errors_4xx),
        ("Invocation5XXErrors", minute.errors_5xx),
    ):
        low = 1.0 if hits == count else 0.0
        high = 1.0 if hits else 0.0
        statistics = {"SampleCount": float(count), "Sum": float(hits), "Minimum": low, "Maximum": high}
        yield {**base, "MetricName": name, "StatisticValues": statistics, "Unit": "None"}
    shares = minute.per_instance
    statistics = {"SampleCount": float(count), "Sum": sum(shares), "Minimum": min(shares)}
    statistics["Maximum"] = max(shares)
    yield {**base, "MetricName": "InvocationsPerInstance", "StatisticValues": statistics, "Unit": "None"}
    latencies = (("ModelLatency", minute.model_latency_us), ("OverheadLatency", minute.overhead_latency_us))
    for name, values in latencies:
        for first in range(0, len(values), MAX_VALUES_PER_DATUM):
            chunk = values[first : first + MAX_VALUES_PER_DATUM]
            yield {**base, "MetricName": name, "Values": chunk, "Unit": "Microseconds"}
