"""Target tracking's CloudWatch alarms for SageMaker variants, which moto does not create.

moto stores scaling policies; for a target-tracking policy on a SageMaker variant AWS also
creates two CloudWatch alarms, lists them in the policy's ``Alarms`` and acts on them:

* ``TargetTracking-<resource id>-AlarmHigh-<uuid>``: the metric above the target value for 3 of 3
  one-minute datapoints (scale out);
* ``TargetTracking-<resource id>-AlarmLow-<uuid>``: below 90% of it for 15 of 15 (scale in; not
  created when the policy disables scale-in).

Their actions name the policy's ARN and their description says not to touch them, as AWS's do.
This service extends moto's operations (moto stores, then the alarms are put, found or
deleted through moto's CloudWatch): PutScalingPolicy creates or updates them, DescribeScalingPolicies
lists them, DeleteScalingPolicy deletes them, DeregisterScalableTarget deletes the target's
policies and their alarms first (as AWS does; moto would leave them). The metric is
``InvocationsPerInstance`` (Sum per minute) for ``SageMakerVariantInvocationsPerInstance``, or
the policy's ``CustomizedMetricSpecification`` (a single metric).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from local_aws.protocol.api import operation
from local_aws.protocol.moto_calls import MotoCalls
from local_aws.services.application_autoscaling.api import APPLICATION_AUTOSCALING
from local_aws.services.base import Service

API = "application-autoscaling"
VARIANT_RESOURCE = re.compile(r"endpoint/([^/]+)/variant/([^/]+)")
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
INVOCATIONS_PER_INSTANCE = "SageMakerVariantInvocationsPerInstance"
HIGH, LOW = "AlarmHigh", "AlarmLow"
SCALE_IN_THRESHOLD = 0.9  # AlarmLow fires below 90% of the target value
PERIODS = {HIGH: 3, LOW: 15}  # one-minute datapoints, all of which must breach


def tracked_variant(policy: dict[str, Any]) -> tuple[str, str] | None:
    """(endpoint, variant) of a target-tracking policy on a SageMaker variant, else None."""
    found = VARIANT_RESOURCE.fullmatch(policy.get("ResourceId", ""))
    if (
        found is None
        or policy.get("ServiceNamespace") != "sagemaker"
        or policy.get("ScalableDimension") != DIMENSION
        or policy.get("PolicyType") != "TargetTrackingScaling"
    ):
        return None
    return found.group(1), found.group(2)


def alarm_metric(policy: dict[str, Any]) -> dict[str, Any] | None:
    """The metric (PutMetricAlarm members) a tracking policy's alarms watch, or None when it is
    one this stand-in does not track (another predefined metric, metric math)."""
    variant = tracked_variant(policy)
    tracking = policy.get("TargetTrackingScalingPolicyConfiguration") or {}
    if variant is None:
        return None
    predefined = (tracking.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
    custom = tracking.get("CustomizedMetricSpecification")
    if predefined == INVOCATIONS_PER_INSTANCE:
        endpoint, variant_name = variant
        dimensions = [
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": variant_name},
        ]
        return {
            "Namespace": "AWS/SageMaker",
            "MetricName": "InvocationsPerInstance",
            "Dimensions": dimensions,
            "Statistic": "Sum",
        }
    if custom and custom.get("MetricName") and not custom.get("Metrics"):
        metric = {
            "Namespace": custom["Namespace"],
            "MetricName": custom["MetricName"],
            "Dimensions": custom.get("Dimensions") or [],
            "Statistic": custom["Statistic"],
        }
        if custom.get("Unit"):
            metric["Unit"] = custom["Unit"]
        return metric
    return None


def alarm_requests(policy: dict[str, Any], policy_arn: str, names: dict[str, str]) -> list[dict[str, Any]]:
    """PutMetricAlarm requests for a policy's alarms; ``names`` keeps existing alarm names by kind."""
    metric = alarm_metric(policy)
    if metric is None:
        return []
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    target = float(tracking["TargetValue"])
    kinds = [HIGH] if tracking.get("DisableScaleIn") else [HIGH, LOW]
    requests = []
    for kind in kinds:
        name = names.get(kind) or f"TargetTracking-{policy['ResourceId']}-{kind}-{uuid.uuid4()}"
        requests.append(
            {
                "AlarmName": name,
                "AlarmDescription": f"DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {policy_arn}.",
                "ActionsEnabled": True,
                "AlarmActions": [policy_arn],
                **metric,
                "Period": 60,
                "EvaluationPeriods": PERIODS[kind],
                "DatapointsToAlarm": PERIODS[kind],
                "Threshold": target if kind == HIGH else round(target * SCALE_IN_THRESHOLD, 6),
                "ComparisonOperator": "GreaterThanThreshold" if kind == HIGH else "LessThanThreshold",
            }
        )
    return requests


def alarm_kind(name: str) -> str | None:
    return HIGH if f"-{HIGH}-" in name else LOW if f"-{LOW}-" in name else None


class ScalingPolicyAlarms(Service):
    """PutScalingPolicy, DescribeScalingPolicies, DeleteScalingPolicy, DeregisterScalableTarget:
    moto's answers, with target tracking's alarms."""

    api = APPLICATION_AUTOSCALING

    @property
    def _moto(self) -> MotoCalls:
        assert self.context.moto is not None, "the server sets context.moto before services start"
        return self.context.moto

    @operation("PutScalingPolicy")
    def put_scaling_policy(self, request: dict[str, Any]) -> dict[str, Any]:
        previous = self._policy(request)
        stored = self._moto.call(API, "PutScalingPolicy", request)
        existing = self.alarms_of(previous["PolicyARN"]) if previous else []
        names = {kind: alarm["AlarmName"] for alarm in existing if (kind := alarm_kind(alarm["AlarmName"]))}
        policy = {**request, "PolicyARN": stored["PolicyARN"]}
        wanted = alarm_requests(policy, stored["PolicyARN"], names)
        for alarm in wanted:
            self._moto.call("cloudwatch", "PutMetricAlarm", alarm)
        stale = [a["AlarmName"] for a in existing if a["AlarmName"] not in {w["AlarmName"] for w in wanted}]
        if stale:
            self._moto.call("cloudwatch", "DeleteAlarms", {"AlarmNames": stale})
        return {"PolicyARN": stored["PolicyARN"], "Alarms": self._alarm_list(stored["PolicyARN"])}

    @operation("DescribeScalingPolicies")
    def describe_scaling_policies(self, request: dict[str, Any]) -> dict[str, Any]:
        described = self._moto.call(API, "DescribeScalingPolicies", request)
        # moto ignores PolicyNames and matches ResourceId as a substring; AWS does neither.
        names, resource = request.get("PolicyNames"), request.get("ResourceId")
        policies = [
            policy
            for policy in described.get("ScalingPolicies", [])
            if (not names or policy["PolicyName"] in names)
            and (not resource or policy["ResourceId"] == resource)
        ]
        for policy in policies:
            if alarm_metric(policy) is not None:
                policy["Alarms"] = self._alarm_list(policy["PolicyARN"])
        return {**described, "ScalingPolicies": policies}

    @operation("DeleteScalingPolicy")
    def delete_scaling_policy(self, request: dict[str, Any]) -> dict[str, Any]:
        previous = self._policy(request)
        self._moto.call(API, "DeleteScalingPolicy", request)
        self._delete_alarms(previous)
        return {}

    @operation("DeregisterScalableTarget")
    def deregister_scalable_target(self, request: dict[str, Any]) -> dict[str, Any]:
        scope = {key: request[key] for key in ("ServiceNamespace", "ResourceId", "ScalableDimension")}
        # Fails as moto fails for a target that is not registered, before anything is deleted.
        targets = self._moto.call(
            API,
            "DescribeScalableTargets",
            {"ServiceNamespace": scope["ServiceNamespace"], "ResourceIds": [scope["ResourceId"]],
             "ScalableDimension": scope["ScalableDimension"]},
        )  # fmt: skip
        if targets.get("ScalableTargets"):
            policies = self._moto.call(API, "DescribeScalingPolicies", scope).get("ScalingPolicies", [])
            for policy in policies:
                self._moto.call(API, "DeleteScalingPolicy", {**scope, "PolicyName": policy["PolicyName"]})
                self._delete_alarms(policy)
        return self._moto.call(API, "DeregisterScalableTarget", scope)

    # -- helpers --------------------------------------------------------------------------------
    def alarms_of(self, policy_arn: str) -> list[dict[str, Any]]:
        """The CloudWatch alarms whose actions name this policy (its target-tracking alarms)."""
        described = self._moto.call("cloudwatch", "DescribeAlarms", {"ActionPrefix": policy_arn})
        return [a for a in described.get("MetricAlarms", []) if policy_arn in (a.get("AlarmActions") or [])]

    def _alarm_list(self, policy_arn: str) -> list[dict[str, str]]:
        return [{"AlarmName": a["AlarmName"], "AlarmARN": a["AlarmArn"]} for a in self.alarms_of(policy_arn)]

    def _policy(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The stored policy a Put or Delete names, if any."""
        scope = {key: request[key] for key in ("ServiceNamespace", "ResourceId", "ScalableDimension")}
        found = self.describe_scaling_policies({**scope, "PolicyNames": [request["PolicyName"]]})
        return next(iter(found["ScalingPolicies"]), None)

    def _delete_alarms(self, policy: dict[str, Any] | None) -> None:
        if policy is None:
            return
        names = [alarm["AlarmName"] for alarm in self.alarms_of(policy["PolicyARN"])]
        if names:
            self._moto.call("cloudwatch", "DeleteAlarms", {"AlarmNames": names})
