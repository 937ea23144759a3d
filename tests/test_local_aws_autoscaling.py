"""Application Auto Scaling for SageMaker variants in local_aws: target tracking's alarms and the
controller that acts on them.

Pure first (the alarms a policy gets, the count the controller wants from their states), then
through boto3 against a server whose simulated minute lasts a second (time scale 60): a policy
creates AWS's two alarms, lists them, updates and deletes them with itself, and load past the
target scales the variant out once AlarmHigh has seen three one-minute datapoints.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from local_aws_hosting_support import BUCKET, MINUTE, SCALE, client, deploy, invoke, wait_for_state

from local_aws.infra.clock import Clock
from local_aws.protocol.server import LocalAwsServer
from local_aws.services import only
from local_aws.services.application_autoscaling.controller import TrackingSignal, desired_capacity
from local_aws.services.application_autoscaling.policies import alarm_requests

TARGET = {"MinCapacity": 1, "MaxCapacity": 4}
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
PREDEFINED = {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}


def signal(
    high: str = "OK", low: str | None = "OK", metric: float | None = None, **settings: Any
) -> TrackingSignal:
    values = {
        "target_value": 10.0,
        "scale_out_cooldown": 0.0,
        "scale_in_cooldown": 0.0,
        "disable_scale_in": False,
    }
    return TrackingSignal(**{**values, **settings}, high=high, low=low, metric=metric)


def test_alarm_high_scales_out_proportionally_within_the_capacity_bounds():
    assert (
        desired_capacity(1, TARGET, [signal("ALARM", metric=30.0)], since_scaled=1e9) == 3
    )  # ceil(1 * 30 / 10)
    assert desired_capacity(1, TARGET, [signal("ALARM", metric=500.0)], since_scaled=1e9) == 4  # MaxCapacity
    assert desired_capacity(2, TARGET, [signal("ALARM", metric=None)], since_scaled=1e9) == 3  # one step
    assert desired_capacity(1, {"MinCapacity": 2, "MaxCapacity": 3}, [], since_scaled=1e9) == 2
    assert desired_capacity(5, {"MinCapacity": 2, "MaxCapacity": 3}, [], since_scaled=1e9) == 3


def test_alarm_low_scales_in_unless_disabled_and_every_policy_must_agree():
    assert (
        desired_capacity(4, TARGET, [signal("OK", "ALARM", metric=4.0)], since_scaled=1e9) == 2
    )  # ceil(4*4/10)
    assert desired_capacity(4, TARGET, [signal("OK", "ALARM", disable_scale_in=True)], since_scaled=1e9) == 4
    both = [signal("OK", "ALARM", metric=1.0), signal("OK", "OK")]
    assert desired_capacity(4, TARGET, both, since_scaled=1e9) == 4
    assert (
        desired_capacity(1, TARGET, [signal("OK", "ALARM", metric=0.0)], since_scaled=1e9) == 1
    )  # MinCapacity


def test_cooldowns_and_one_action_per_alarm_period_hold_the_count():
    out = [signal("ALARM", metric=30.0, scale_out_cooldown=300)]
    assert desired_capacity(1, TARGET, out, since_scaled=120) == 1  # within the scale-out cooldown
    assert desired_capacity(1, TARGET, out, since_scaled=301) == 3
    assert desired_capacity(1, TARGET, [signal("ALARM", metric=30.0)], since_scaled=30) == 1  # same minute
    scale_in = [signal("OK", "ALARM", metric=1.0, scale_in_cooldown=600)]
    assert desired_capacity(3, TARGET, scale_in, since_scaled=300) == 3
    assert desired_capacity(3, TARGET, scale_in, since_scaled=601) == 1


def policy(target_value: float = 10.0, **tracking: Any) -> dict[str, Any]:
    return {
        "PolicyName": "p",
        "ServiceNamespace": "sagemaker",
        "ResourceId": "endpoint/dogs/variant/AllTraffic",
        "ScalableDimension": DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": target_value, "PredefinedMetricSpecification": PREDEFINED, **tracking,
        },
    }  # fmt: skip


def test_a_sagemaker_target_tracking_policy_gets_the_alarms_aws_creates():
    arn = (
        "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:u:"
        "resource/sagemaker/endpoint/dogs/variant/AllTraffic:policyName/p"
    )
    high, low = alarm_requests(policy(), arn, {})
    assert high["AlarmName"].startswith("TargetTracking-endpoint/dogs/variant/AllTraffic-AlarmHigh-")
    assert low["AlarmName"].startswith("TargetTracking-endpoint/dogs/variant/AllTraffic-AlarmLow-")
    for alarm, periods, threshold, comparison in ((high, 3, 10.0, "GreaterThanThreshold"),
                                                  (low, 15, 9.0, "LessThanThreshold")):  # fmt: skip
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"], alarm["Period"]) == (
            periods,
            periods,
            60,
        )
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (threshold, comparison)
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
            "AWS/SageMaker", "InvocationsPerInstance", "Sum"
        )  # fmt: skip
        assert alarm["AlarmActions"] == [arn] and alarm["AlarmDescription"].startswith(
            "DO NOT EDIT OR DELETE"
        )
    only_high = alarm_requests(policy(DisableScaleIn=True), arn, {"AlarmHigh": high["AlarmName"]})
    assert [a["AlarmName"] for a in only_high] == [high["AlarmName"]]  # no scale-in: no AlarmLow
    kept = alarm_requests(policy(20.0), arn, {"AlarmHigh": high["AlarmName"], "AlarmLow": low["AlarmName"]})
    assert [a["AlarmName"] for a in kept] == [high["AlarmName"], low["AlarmName"]]  # a re-put updates them
    cpu = policy()
    cpu["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"] = {
        "PredefinedMetricType": "SageMakerVariantProvisionedConcurrencyUtilization"
    }
    assert alarm_requests(cpu, arn, {}) == []  # a metric local_aws does not publish: no alarms, as moto


# -- through a server ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    services = only("cloudwatch-alarms", "hosting", "sagemaker-runtime", "application-autoscaling-policies",
                    "application-autoscaling")  # fmt: skip
    with LocalAwsServer(tmp_path_factory.mktemp("autoscaling"), service_classes=services,
                        clock=Clock(SCALE)) as running:  # fmt: skip
        yield running


@pytest.fixture(scope="module")
def clients(server):
    names = ("sagemaker", "s3", "sagemaker-runtime", "cloudwatch", "application-autoscaling")
    handles = tuple(client(server, name) for name in names)
    handles[1].create_bucket(Bucket=BUCKET)
    return handles


def register(autoscaling, resource: str, low: int, high: int) -> None:
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=DIMENSION, MinCapacity=low,
        MaxCapacity=high,
    )  # fmt: skip


def put_policy(autoscaling, resource: str, target_value: float, **tracking: Any) -> dict[str, Any]:
    tracking = {"TargetValue": target_value, "PredefinedMetricSpecification": PREDEFINED, **tracking}
    return autoscaling.put_scaling_policy(
        PolicyName="invocations", ServiceNamespace="sagemaker", ResourceId=resource,
        ScalableDimension=DIMENSION, PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration=tracking,
    )  # fmt: skip


def test_a_policy_put_through_boto3_creates_lists_updates_and_deletes_its_two_alarms(clients):
    *_, cloudwatch, autoscaling = clients
    resource = "endpoint/alarmed-variant/variant/AllTraffic"
    register(autoscaling, resource, 1, 2)
    put = put_policy(autoscaling, resource, 10.0)
    names = sorted(a["AlarmName"] for a in put["Alarms"])
    assert [n.split("-Alarm")[1].split("-")[0] for n in names] == ["High", "Low"]
    assert all(n.startswith(f"TargetTracking-{resource}-Alarm") for n in names)
    (described,) = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingPolicies"
    ]
    assert sorted(a["AlarmName"] for a in described["Alarms"]) == names
    alarms = cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    assert {a["StateValue"] for a in alarms} == {"INSUFFICIENT_DATA"}  # new alarms, no data yet
    assert {a["AlarmActions"][0] for a in alarms} == {put["PolicyARN"]}

    again = put_policy(autoscaling, resource, 20.0)
    assert sorted(a["AlarmName"] for a in again["Alarms"]) == names
    thresholds = {
        a["AlarmName"]: a["Threshold"] for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    }
    assert sorted(thresholds.values()) == [18.0, 20.0]
    no_scale_in = put_policy(autoscaling, resource, 20.0, DisableScaleIn=True)
    assert [a["AlarmName"] for a in no_scale_in["Alarms"]] == [n for n in names if "-AlarmHigh-" in n]

    autoscaling.delete_scaling_policy(
        PolicyName="invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=DIMENSION,
    )
    assert cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"] == []
    put_policy(autoscaling, resource, 10.0)
    autoscaling.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=DIMENSION
    )
    assert (
        autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
            "ScalingPolicies"
        ]
        == []
    )
    assert [a for a in cloudwatch.describe_alarms()["MetricAlarms"] if resource in a["AlarmName"]] == []


def desired_count(sm, endpoint: str) -> int:
    return sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"][0]["DesiredInstanceCount"]


def test_load_past_the_target_scales_out_after_three_one_minute_datapoints(clients, record_property):
    sm, s3, runtime, cloudwatch, autoscaling = clients
    endpoint, _ = deploy(sm, s3, "busy")
    resource = f"endpoint/{endpoint}/variant/AllTraffic"
    register(autoscaling, resource, 1, 3)
    alarms = put_policy(autoscaling, resource, 5.0, ScaleOutCooldown=0, ScaleInCooldown=3600)["Alarms"]
    high = next(a["AlarmName"] for a in alarms if "-AlarmHigh-" in a["AlarmName"])
    sent, stop = [0], threading.Event()

    def load() -> None:  # bounded: at most 30 s and 3000 requests, well past 5 per instance-minute
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline and sent[0] < 3000:
            invoke(runtime, endpoint, {"x": sent[0]})
            sent[0] += 1

    worker = threading.Thread(target=load, name="load")
    first_minute = Clock(SCALE).period_start(60)  # the minute of the first loaded datapoint
    worker.start()
    try:
        deadline = time.monotonic() + 25
        while (count := desired_count(sm, endpoint)) == 1:
            assert time.monotonic() < deadline, "the variant never scaled out"
            time.sleep(MINUTE / 20)
        minutes = (time.time() - first_minute) / MINUTE
    finally:
        stop.set()
        worker.join(60)
    fired = wait_for_state(cloudwatch, high, "ALARM", minutes=1)
    print(f"\nscaled out 1 -> {count} after {minutes:.1f} simulated minutes of load ({sent[0]} requests)")
    record_property("scale_out_after_simulated_minutes", round(minutes, 2))
    record_property("requests_sent", sent[0])
    assert fired["StateReason"].startswith("Threshold Crossed: 3 out of the last 3 datapoints")
    assert minutes >= 3, "scaled out before AlarmHigh could have seen three one-minute datapoints"
    assert count == 3  # ceil(1 * invocations per instance / 5) capped at MaxCapacity
