"""What AWS's Application Auto Scaling does for SageMaker variants, which moto only records.

Every :data:`TICK_SECONDS` of simulated time the controller reads the scalable targets and
scaling policies registered in moto (namespace ``sagemaker``, dimension
``sagemaker:variant:DesiredInstanceCount``) and, for each InService variant, acts on its
target-tracking policies' CloudWatch alarms (:mod:`.policies` creates them; the alarm evaluator
sets their state) as target tracking does: ``AlarmHigh`` in ALARM scales out, ``AlarmLow`` in
ALARM scales in (unless the policy disables scale-in), each only once the policy's cooldown has
passed since the variant last scaled, and at most once per alarm period (a minute), as an alarm
that stays in ALARM invokes its action again each period. The new count is proportional,
``ceil(current * metric / target)``, at least one step, always within [MinCapacity,
MaxCapacity]; it is applied with SageMaker's UpdateEndpointWeightsAndCapacities through this
server, as the real service does.
With several policies, any one may scale out; scale-in needs all of them to want it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from local_aws.infra.background import every
from local_aws.protocol.errors import AwsError
from local_aws.services.application_autoscaling.policies import (
    API,
    DIMENSION,
    HIGH,
    LOW,
    VARIANT_RESOURCE,
    alarm_kind,
)
from local_aws.services.base import Context, Service

log = logging.getLogger("local_aws.autoscaling")

TICK_SECONDS = 15.0  # simulated seconds between rounds
MIN_TICK_REAL_SECONDS = 0.25
DEFAULT_COOLDOWN_SECONDS = 300.0
ALARM_PERIOD_SECONDS = 60.0  # target tracking's alarms have one-minute periods


@dataclass(frozen=True)
class TrackingSignal:
    """One target-tracking policy as the controller sees it in a round."""

    target_value: float
    scale_out_cooldown: float
    scale_in_cooldown: float
    disable_scale_in: bool
    high: str | None  # the AlarmHigh's state
    low: str | None  # the AlarmLow's state (None: no such alarm)
    metric: float | None  # the tracked metric's latest datapoint


def desired_capacity(
    current: int, target: dict[str, Any], signals: Sequence[TrackingSignal], since_scaled: float
) -> int:
    """The count a variant should have. ``since_scaled``: simulated seconds since it last scaled."""
    outs, ins = [], []
    for signal in signals:
        proportional = (
            math.ceil(current * signal.metric / signal.target_value) if signal.metric is not None else None
        )
        if since_scaled < ALARM_PERIOD_SECONDS:
            continue
        if signal.high == "ALARM" and since_scaled >= signal.scale_out_cooldown:
            outs.append(max(current + 1, proportional or 0))
        elif (
            signal.low == "ALARM" and not signal.disable_scale_in and since_scaled >= signal.scale_in_cooldown
        ):
            ins.append(min(current - 1, proportional if proportional is not None else current - 1))
    desired = current
    if outs:
        desired = max(outs)
    elif ins and len(ins) == len(signals):
        desired = max(ins)
    return min(max(desired, int(target["MinCapacity"])), int(target["MaxCapacity"]))


def signal_of(
    policy: dict[str, Any], alarms: dict[str, dict[str, Any]], metric: float | None
) -> TrackingSignal:
    """A policy (with its ``Alarms``), the described alarms by name, the tracked metric's value."""
    tracking = policy.get("TargetTrackingScalingPolicyConfiguration") or {}
    states = {
        alarm_kind(alarm["AlarmName"]): alarms.get(alarm["AlarmName"], {}).get("StateValue")
        for alarm in policy["Alarms"]
    }
    return TrackingSignal(
        target_value=float(tracking["TargetValue"]),
        scale_out_cooldown=float(tracking.get("ScaleOutCooldown", DEFAULT_COOLDOWN_SECONDS)),
        scale_in_cooldown=float(tracking.get("ScaleInCooldown", DEFAULT_COOLDOWN_SECONDS)),
        disable_scale_in=bool(tracking.get("DisableScaleIn", False)),
        high=states.get(HIGH),
        low=states.get(LOW),
        metric=metric,
    )


class AutoscalingController(Service):
    """No API of its own (moto's, extended by :mod:`.policies`); it works in the background."""

    def __init__(self, context: Context):
        super().__init__(context)
        self._last_scaled: dict[tuple[str, str], float] = {}  # (endpoint, variant) -> monotonic time
        self._sagemaker: Any = None
        self._stop = threading.Event()
        interval = max(MIN_TICK_REAL_SECONDS, context.clock.real(TICK_SECONDS))
        every(interval, "autoscaling-controller", self.evaluate, self._stop)

    def evaluate(self) -> None:
        """One round over every scalable SageMaker variant."""
        hosting = self.context.services.get("hosting")
        policies_service = self.context.services.get("application-autoscaling-policies")
        if hosting is None or policies_service is None or self.context.moto is None:
            return
        moto = self.context.moto
        scope: dict[str, Any] = {"ServiceNamespace": "sagemaker"}
        for target in moto.call(API, "DescribeScalableTargets", scope)["ScalableTargets"]:
            found = VARIANT_RESOURCE.fullmatch(target["ResourceId"])
            if not found or target.get("ScalableDimension") != DIMENSION:
                continue
            capacity = hosting.variant_capacity(*found.groups())
            if capacity is None:
                continue
            of_target = {**scope, "ResourceId": target["ResourceId"], "ScalableDimension": DIMENSION}
            policies = [
                policy
                for policy in policies_service.describe_scaling_policies(of_target)["ScalingPolicies"]
                if policy.get("PolicyType") == "TargetTrackingScaling" and policy.get("Alarms")
            ]
            signals = self._signals(policies)
            key = (capacity.endpoint_name.lower(), capacity.variant_name)
            since = (
                self.context.clock.simulated(time.monotonic() - self._last_scaled[key])
                if key in self._last_scaled
                else math.inf
            )
            current = capacity.desired_count
            desired = desired_capacity(current, target, signals, since)
            if desired != current:
                self._scale(key, capacity.endpoint_name, capacity.variant_name, current, desired)

    def _signals(self, policies: list[dict[str, Any]]) -> list[TrackingSignal]:
        names = [alarm["AlarmName"] for policy in policies for alarm in policy["Alarms"]]
        if not names:
            return []
        assert self.context.moto is not None
        described = self.context.moto.call("cloudwatch", "DescribeAlarms", {"AlarmNames": names})
        alarms = {alarm["AlarmName"]: alarm for alarm in described.get("MetricAlarms", [])}
        evaluator = self.context.services.get("cloudwatch-alarms")
        signals = []
        for policy in policies:
            high = next((a["AlarmName"] for a in policy["Alarms"] if alarm_kind(a["AlarmName"]) == HIGH), "")
            metric = evaluator.latest_value(high) if evaluator is not None and high else None
            signals.append(signal_of(policy, alarms, metric))
        return signals

    def _scale(self, key: tuple[str, str], endpoint: str, variant: str, current: int, desired: int) -> None:
        log.info("autoscaling %s/%s: %d -> %d", endpoint, variant, current, desired)
        try:
            self._client().update_endpoint_weights_and_capacities(
                EndpointName=endpoint,
                DesiredWeightsAndCapacities=[{"VariantName": variant, "DesiredInstanceCount": desired}],
            )
        except (ClientError, AwsError) as error:  # say the endpoint started updating meanwhile: next round
            log.info("autoscaling %s/%s deferred: %s", endpoint, variant, error)
            return
        self._last_scaled[key] = time.monotonic()

    def _client(self) -> Any:
        if self._sagemaker is None:
            self._sagemaker = self.context.client("sagemaker")
        return self._sagemaker

    def shutdown(self) -> None:
        self._stop.set()
