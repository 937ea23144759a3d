"""The autoscaling controller's target tracking, as a pure function.

The controller acting on moto's records against a real endpoint is
``tests/test_local_aws_hosting.py::test_application_auto_scaling_targets_are_honoured``.
"""

from __future__ import annotations

from typing import Any

from local_aws.services.application_autoscaling.controller import INVOCATIONS_PER_INSTANCE, desired_capacity

TARGET = {"MinCapacity": 1, "MaxCapacity": 4}


def tracking(target_value: float, **settings: Any) -> dict[str, Any]:
    return {
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": target_value,
            "PredefinedMetricSpecification": {"PredefinedMetricType": INVOCATIONS_PER_INSTANCE},
            **settings,
        },
    }


def test_without_a_policy_the_count_only_keeps_within_the_capacity_bounds() -> None:
    assert desired_capacity(1, 500, {"MinCapacity": 2, "MaxCapacity": 3}, [], since_scaled=1e9) == 2
    assert desired_capacity(5, 0, {"MinCapacity": 2, "MaxCapacity": 3}, [], since_scaled=1e9) == 3


def test_target_tracking_wants_invocations_over_the_target_value_capped_by_max_capacity() -> None:
    assert (
        desired_capacity(1, 5, TARGET, [tracking(2.0, ScaleOutCooldown=0)], since_scaled=0) == 3
    )  # ceil(5/2)
    assert desired_capacity(1, 100, TARGET, [tracking(2.0, ScaleOutCooldown=0)], since_scaled=0) == 4


def test_cooldowns_and_disable_scale_in_hold_the_count() -> None:
    policy = [tracking(10.0, ScaleOutCooldown=30, ScaleInCooldown=120)]
    assert desired_capacity(1, 50, TARGET, policy, since_scaled=10) == 1  # within the scale-out cooldown
    assert desired_capacity(1, 50, TARGET, policy, since_scaled=31) == 4
    assert desired_capacity(3, 0, TARGET, policy, since_scaled=60) == 3  # within the scale-in cooldown
    assert desired_capacity(3, 0, TARGET, policy, since_scaled=121) == 1
    no_scale_in = [tracking(10.0, ScaleInCooldown=0, DisableScaleIn=True)]
    assert desired_capacity(3, 0, TARGET, no_scale_in, since_scaled=1e9) == 3


def test_policies_on_other_metrics_are_not_this_controllers() -> None:
    cpu = tracking(50.0, ScaleOutCooldown=0)
    cpu["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
        "PredefinedMetricType"
    ] = "SageMakerVariantCPUUtilization"
    step = {"PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {}}
    assert desired_capacity(2, 1000, TARGET, [cpu, step], since_scaled=1e9) == 2
