"""Application Auto Scaling for a SageMaker endpoint variant (the provider has no operator for it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.sdk import BaseOperator

from dog_breed.links import EndpointAutoscalingLink
from dog_breed.naming import scaling_policy_name
from dog_breed.params import AWS_CONN_ID
from dog_breed.specs import VARIANT_NAME

SERVICE_NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
PREDEFINED_METRIC = "SageMakerVariantInvocationsPerInstance"


def variant_resource_id(endpoint_name: str, variant_name: str = VARIANT_NAME) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant_name}"


def register_target_request(resource_id: str, min_capacity: int, max_capacity: int) -> dict[str, Any]:
    return {
        "ServiceNamespace": SERVICE_NAMESPACE,
        "ResourceId": resource_id,
        "ScalableDimension": SCALABLE_DIMENSION,
        "MinCapacity": min_capacity,
        "MaxCapacity": max_capacity,
    }


def scaling_policy_request(
    resource_id: str,
    policy_name: str,
    target_value: float,
    scale_in_cooldown: int,
    scale_out_cooldown: int,
) -> dict[str, Any]:
    return {
        "PolicyName": policy_name,
        "ServiceNamespace": SERVICE_NAMESPACE,
        "ResourceId": resource_id,
        "ScalableDimension": SCALABLE_DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(target_value),
            "PredefinedMetricSpecification": {"PredefinedMetricType": PREDEFINED_METRIC},
            "ScaleInCooldown": scale_in_cooldown,
            "ScaleOutCooldown": scale_out_cooldown,
        },
    }


def deregister_if_registered(client, resource_id: str) -> bool:
    """Delete the variant's scaling policies and deregister its scalable target; True when there was one.

    UpdateEndpoint cannot change the instance type of an auto-scaled variant, so the
    pipeline calls this before such an update; SageMakerEndpointAutoscalingOperator
    registers the variant again afterwards.
    """
    found = client.describe_scalable_targets(
        ServiceNamespace=SERVICE_NAMESPACE, ResourceIds=[resource_id], ScalableDimension=SCALABLE_DIMENSION
    )["ScalableTargets"]
    if not found:
        return False
    # AWS deletes a target's policies with it; deleting them first does not depend on that.
    policies = client.describe_scaling_policies(
        ServiceNamespace=SERVICE_NAMESPACE, ResourceId=resource_id, ScalableDimension=SCALABLE_DIMENSION
    )["ScalingPolicies"]
    for policy in policies:
        client.delete_scaling_policy(
            PolicyName=policy["PolicyName"],
            ServiceNamespace=SERVICE_NAMESPACE,
            ResourceId=resource_id,
            ScalableDimension=SCALABLE_DIMENSION,
        )
    client.deregister_scalable_target(
        ServiceNamespace=SERVICE_NAMESPACE, ResourceId=resource_id, ScalableDimension=SCALABLE_DIMENSION
    )
    return True


class SageMakerEndpointAutoscalingOperator(BaseOperator):
    """Register an endpoint variant as a scalable target and put a target-tracking policy on
    ``SageMakerVariantInvocationsPerInstance`` with cooldowns.

    Both calls are upserts (RegisterScalableTarget, PutScalingPolicy by name), so a rerun
    converges on the same single target and policy. Returns what it configured.
    """

    template_fields: Sequence[str] = (
        "endpoint_name",
        "variant_name",
        "min_capacity",
        "max_capacity",
        "target_invocations_per_instance",
        "scale_in_cooldown",
        "scale_out_cooldown",
        "region_name",
    )
    ui_color = "#f3e5d8"
    operator_extra_links = (EndpointAutoscalingLink(),)

    def __init__(
        self,
        *,
        endpoint_name: str,
        variant_name: str = VARIANT_NAME,
        min_capacity: int | str = 1,
        max_capacity: int | str = 3,
        target_invocations_per_instance: float | str = 10,
        scale_in_cooldown: int | str = 120,
        scale_out_cooldown: int | str = 30,
        aws_conn_id: str | None = AWS_CONN_ID,
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name
        self.min_capacity = min_capacity
        self.max_capacity = max_capacity
        self.target_invocations_per_instance = target_invocations_per_instance
        self.scale_in_cooldown = scale_in_cooldown
        self.scale_out_cooldown = scale_out_cooldown
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def get_client(self):
        hook = AwsGenericHook(
            aws_conn_id=self.aws_conn_id, client_type="application-autoscaling", region_name=self.region_name
        )
        return hook.conn

    def execute(self, context: Any) -> dict[str, Any]:
        min_capacity, max_capacity = int(self.min_capacity), int(self.max_capacity)
        if min_capacity > max_capacity:
            raise ValueError(f"min_capacity {min_capacity} > max_capacity {max_capacity}")
        client = self.get_client()
        resource_id = variant_resource_id(self.endpoint_name, self.variant_name)
        EndpointAutoscalingLink.persist_for(context, self, resource_id)
        client.register_scalable_target(**register_target_request(resource_id, min_capacity, max_capacity))
        policy = scaling_policy_request(
            resource_id,
            scaling_policy_name(self.endpoint_name, self.variant_name),
            float(self.target_invocations_per_instance),
            int(self.scale_in_cooldown),
            int(self.scale_out_cooldown),
        )
        response = client.put_scaling_policy(**policy)
        self.log.info(
            "Autoscaling %s: %d..%d instances, target %s invocations/instance, cooldowns out %ss in %ss",
            resource_id,
            min_capacity,
            max_capacity,
            policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
            self.scale_out_cooldown,
            self.scale_in_cooldown,
        )
        return {
            "ResourceId": resource_id,
            "MinCapacity": min_capacity,
            "MaxCapacity": max_capacity,
            "PolicyName": policy["PolicyName"],
            "PolicyARN": response.get("PolicyARN"),
            "TargetTrackingScalingPolicyConfiguration": policy["TargetTrackingScalingPolicyConfiguration"],
        }
