"""SageMakerEndpointAutoscalingOperator against moto's Application Auto Scaling."""

from __future__ import annotations

import airflow_fixtures
import boto3
import pytest
from moto import mock_aws

from dog_breed.hooks import ApplicationAutoScalingHook
from dog_breed.operators.autoscaling import SageMakerEndpointAutoscalingOperator
from dog_breed.specs import PREDEFINED_METRIC, variant_resource_id

RESOURCE = variant_resource_id("ep")


def make_operator(**overrides) -> SageMakerEndpointAutoscalingOperator:
    args = {"task_id": "autoscale", "endpoint_name": "ep", "region_name": airflow_fixtures.REGION}
    return SageMakerEndpointAutoscalingOperator(**{**args, **overrides})


def state(client) -> tuple[list, list]:
    """Targets and policies, without the fields moto regenerates on every upsert."""
    volatile = {"PolicyARN", "CreationTime", "Alarms", "ScalableTargetARN"}
    targets = client.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    policies = client.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    strip = lambda items: [{k: v for k, v in item.items() if k not in volatile} for item in items]  # noqa: E731
    return strip(targets), strip(policies)


@mock_aws
def test_registers_target_and_target_tracking_policy_with_cooldowns():
    result = make_operator(
        min_capacity=1, max_capacity=3, target_invocations_per_instance=10, scale_in_cooldown=120
    ).execute(airflow_fixtures.minimal_context())
    client = boto3.client("application-autoscaling", region_name=airflow_fixtures.REGION)
    targets, policies = state(client)
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(RESOURCE, 1, 3)]
    (policy,) = policies
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == PREDEFINED_METRIC
    assert (config["TargetValue"], config["ScaleOutCooldown"], config["ScaleInCooldown"]) == (10.0, 30, 120)
    assert result["ResourceId"] == RESOURCE and result["PolicyName"] == policy["PolicyName"]


@mock_aws
def test_rerun_is_idempotent_and_a_changed_run_updates_in_place():
    client = boto3.client("application-autoscaling", region_name=airflow_fixtures.REGION)
    first = make_operator().execute({})
    snapshot = state(client)
    again = make_operator().execute({})
    assert {k: v for k, v in again.items() if k != "PolicyARN"} == {
        k: v for k, v in first.items() if k != "PolicyARN"
    }
    assert state(client) == snapshot
    make_operator(max_capacity=5, target_invocations_per_instance=20).execute({})
    targets, policies = state(client)
    assert len(targets) == 1 and targets[0]["MaxCapacity"] == 5
    assert (
        len(policies) == 1 and policies[0]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 20.0
    )


@mock_aws
def test_deregister_before_an_instance_type_change():
    client = boto3.client("application-autoscaling", region_name=airflow_fixtures.REGION)
    hook = ApplicationAutoScalingHook(aws_conn_id="aws_default", region_name=airflow_fixtures.REGION)
    assert hook.deregister_variant(RESOURCE) is False
    make_operator().execute({})
    assert hook.deregister_variant(RESOURCE) is True
    assert state(client) == ([], [])


def test_the_connection_settings_reach_the_client():
    operator = make_operator(**airflow_fixtures.CLIENT_SETTINGS)
    airflow_fixtures.assert_client_settings_reached(operator.hook.conn, "application-autoscaling")


def test_rejects_min_above_max_before_calling_aws():
    with pytest.raises(ValueError, match="min_capacity"):
        make_operator(min_capacity=4, max_capacity=3).execute({})


def test_template_fields_cover_every_setting():
    assert set(SageMakerEndpointAutoscalingOperator.template_fields) >= {
        "aws_conn_id",
        "region_name",
        "verify",
        "endpoint_name",
        "min_capacity",
        "max_capacity",
        "target_invocations_per_instance",
        "scale_in_cooldown",
        "scale_out_cooldown",
    }
