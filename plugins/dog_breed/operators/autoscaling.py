"""Application Auto Scaling for a SageMaker endpoint variant (the provider has no operator for it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from dog_breed.hooks import ApplicationAutoScalingHook
from dog_breed.links import EndpointAutoscalingLink
from dog_breed.naming import scaling_policy_name
from dog_breed.specs import VARIANT_NAME, register_target_request, scaling_policy_request, variant_resource_id


class SageMakerEndpointAutoscalingOperator(AwsBaseOperator[ApplicationAutoScalingHook]):
    """Register an endpoint variant as a scalable target and put a target-tracking policy on
    ``SageMakerVariantInvocationsPerInstance`` with cooldowns.

    Both calls are upserts (RegisterScalableTarget, PutScalingPolicy by name), so a rerun
    converges on the same single target and policy. Returns what it configured.

    :param endpoint_name: the endpoint whose variant scales (templated)
    :param variant_name: the production variant (templated)
    :param min_capacity: instances at least (templated)
    :param max_capacity: instances at most (templated)
    :param target_invocations_per_instance: the tracked value of invocations per instance
        per minute (templated)
    :param scale_in_cooldown: seconds after a scale-in before the next one (templated)
    :param scale_out_cooldown: seconds after a scale-out before the next one (templated)
    """

    aws_hook_class = ApplicationAutoScalingHook
    template_fields: Sequence[str] = aws_template_fields(
        "endpoint_name",
        "variant_name",
        "min_capacity",
        "max_capacity",
        "target_invocations_per_instance",
        "scale_in_cooldown",
        "scale_out_cooldown",
    )
    ui_color = "#f3e5d8"
    operator_extra_links = (EndpointAutoscalingLink(),)

    def __init__(
        self,
        *,
        endpoint_name: str,
        variant_name: str = VARIANT_NAME,
        min_capacity: int = 1,
        max_capacity: int = 3,
        target_invocations_per_instance: float = 10,
        scale_in_cooldown: int = 120,
        scale_out_cooldown: int = 30,
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

    def execute(self, context: Any) -> dict[str, Any]:
        if self.min_capacity > self.max_capacity:
            raise ValueError(f"min_capacity {self.min_capacity} > max_capacity {self.max_capacity}")
        resource_id = variant_resource_id(self.endpoint_name, self.variant_name)
        EndpointAutoscalingLink.persist_for(context, self, resource_id)
        self.hook.conn.register_scalable_target(
            **register_target_request(resource_id, self.min_capacity, self.max_capacity)
        )
        policy = scaling_policy_request(
            resource_id,
            scaling_policy_name(self.endpoint_name, self.variant_name),
            self.target_invocations_per_instance,
            self.scale_in_cooldown,
            self.scale_out_cooldown,
        )
        response = self.hook.conn.put_scaling_policy(**policy)
        tracking = policy["TargetTrackingScalingPolicyConfiguration"]
        self.log.info(
            "Autoscaling %s: %d..%d instances, target %s invocations/instance, cooldowns out %ss in %ss",
            resource_id,
            self.min_capacity,
            self.max_capacity,
            tracking["TargetValue"],
            self.scale_out_cooldown,
            self.scale_in_cooldown,
        )
        return {
            "ResourceId": resource_id,
            "MinCapacity": self.min_capacity,
            "MaxCapacity": self.max_capacity,
            "PolicyName": policy["PolicyName"],
            "PolicyARN": response.get("PolicyARN"),
            "TargetTrackingScalingPolicyConfiguration": tracking,
        }
