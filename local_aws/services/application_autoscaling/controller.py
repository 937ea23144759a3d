"""What AWS's Application Auto Scaling does for SageMaker variants, which moto only records.

Every ``AUTOSCALING_INTERVAL_SECONDS`` the controller reads the scalable targets and scaling
policies registered in moto (namespace ``sagemaker``, dimension
``sagemaker:variant:DesiredInstanceCount``), computes each InService variant's desired
count and, when it differs, calls SageMaker's UpdateEndpointWeightsAndCapacities through
this server, as the real service does. Each variant is kept within [MinCapacity,
MaxCapacity]; a target-tracking policy on ``SageMakerVariantInvocationsPerInstance`` wants
ceil(invocations in the last minute / TargetValue), applied after the policy's cooldowns.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import Any

from botocore.exceptions import ClientError

from local_aws.infra.background import every
from local_aws.services.base import Context, Service

log = logging.getLogger("local_aws.autoscaling")

AUTOSCALING_INTERVAL_SECONDS = 15.0  # how often registered scalable targets are evaluated
INVOCATIONS_PER_INSTANCE = "SageMakerVariantInvocationsPerInstance"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
VARIANT_RESOURCE = re.compile(r"endpoint/([^/]+)/variant/([^/]+)")
DEFAULT_COOLDOWN_SECONDS = 300.0


def desired_capacity(
    current: int,
    invocations: int,
    target: dict[str, Any],
    policies: list[dict[str, Any]],
    since_scaled: float,
) -> int:
    """The count a variant should have: target tracking within the target's capacity bounds.
    ``since_scaled``: seconds since this variant last scaled (cooldowns count from there)."""
    desired = current
    for policy in policies:
        tracking = policy.get("TargetTrackingScalingPolicyConfiguration") or {}
        metric = (tracking.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
        if policy.get("PolicyType") != "TargetTrackingScaling" or metric != INVOCATIONS_PER_INSTANCE:
            continue
        wanted = max(1, math.ceil(invocations / float(tracking["TargetValue"])))
        may_scale_out = wanted > current and since_scaled >= float(
            tracking.get("ScaleOutCooldown", DEFAULT_COOLDOWN_SECONDS)
        )
        may_scale_in = (
            wanted < current
            and not tracking.get("DisableScaleIn", False)
            and since_scaled >= float(tracking.get("ScaleInCooldown", DEFAULT_COOLDOWN_SECONDS))
        )
        if may_scale_out or may_scale_in:
            desired = wanted
    return min(max(desired, int(target["MinCapacity"])), int(target["MaxCapacity"]))


class AutoscalingController(Service):
    """No API of its own (moto serves Application Auto Scaling's); it works in the background."""

    def __init__(self, context: Context):
        super().__init__(context)
        self._last_scaled: dict[tuple[str, str], float] = {}  # (endpoint, variant) -> monotonic time
        self._clients: dict[str, Any] = {}
        self._stop = threading.Event()
        every(AUTOSCALING_INTERVAL_SECONDS, "autoscaling-controller", self.evaluate, self._stop)

    def evaluate(self) -> None:
        """One round over every scalable SageMaker variant."""
        hosting = self.context.services.get("hosting")
        if hosting is None:
            return
        autoscaling = self._client("application-autoscaling")
        targets = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        for target in targets:
            found = VARIANT_RESOURCE.fullmatch(target["ResourceId"])
            if not found or target.get("ScalableDimension") != DIMENSION:
                continue
            load = hosting.variant_load(*found.groups())
            if load is None:
                continue
            policies = autoscaling.describe_scaling_policies(
                ServiceNamespace="sagemaker", ResourceId=target["ResourceId"]
            )["ScalingPolicies"]
            key = (load.endpoint_name.lower(), load.variant_name)
            since = time.monotonic() - self._last_scaled[key] if key in self._last_scaled else math.inf
            desired = desired_capacity(
                load.desired_count, load.invocations_last_minute, target, policies, since
            )
            if desired != load.desired_count:
                self._scale(key, load.endpoint_name, load.variant_name, load.desired_count, desired)

    def _scale(self, key: tuple[str, str], endpoint: str, variant: str, current: int, desired: int) -> None:
        log.info("autoscaling %s/%s: %d -> %d", endpoint, variant, current, desired)
        try:
            self._client("sagemaker").update_endpoint_weights_and_capacities(
                EndpointName=endpoint,
                DesiredWeightsAndCapacities=[{"VariantName": variant, "DesiredInstanceCount": desired}],
            )
        except ClientError as error:  # say the endpoint started updating meanwhile: next round
            log.info("autoscaling %s/%s deferred: %s", endpoint, variant, error)
            return
        self._last_scaled[key] = time.monotonic()

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.context.client(service)
        return self._clients[service]

    def shutdown(self) -> None:
        self._stop.set()
