"""The pipeline's AWS calls that the provider's hooks do not make, as thin subclasses of them.

Operators build these through ``AwsBaseOperator`` (so ``aws_conn_id``, ``region_name``,
``verify`` and ``botocore_config`` reach every client) and the Python tasks build them from
the run's Params; either way the connection's ``endpoint_url`` / ``service_config`` extras apply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook
from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from botocore.exceptions import BotoCoreError, ClientError

from dog_breed.approval import REJECTED
from dog_breed.gate import CHAMPION_TAG_KEYS
from dog_breed.registry import rollback_description
from dog_breed.specs import SCALABLE_DIMENSION, SERVICE_NAMESPACE, tags, tags_as_dict

WAITERS_DIR = Path(__file__).resolve().parent / "waiters"
# SageMaker answers ValidationException for a missing resource (moto: ResourceNotFound).
_NOT_FOUND = ("ValidationException", "ResourceNotFound")
log = logging.getLogger(__name__)


def describe_or_none(describe: Callable[..., dict], *args: Any, **kwargs: Any) -> dict | None:
    """``describe(*args, **kwargs)``, or None when SageMaker says there is no such resource."""
    try:
        return describe(*args, **kwargs)
    except ClientError as error:
        if error.response["Error"]["Code"] in _NOT_FOUND:
            return None
        raise


# While it streams a training job's logs, the provider's hook describes the job at most every
# 30 s (hooks/sagemaker.py, describe_training_job_with_log), whatever check_interval says.
PROVIDER_LOG_DESCRIBE_S = 30.0


class PipelineSageMakerHook(SageMakerHook):
    """SageMakerHook plus the champion tags the quality gate and the rollback read and write, the
    model registry calls the provider's hook lacks, and a training wait that notices the job's
    end at its own ``check_interval`` rather than up to 30 s late."""

    _describe_interval = PROVIDER_LOG_DESCRIBE_S

    def check_training_status_with_log(
        self,
        job_name: str,
        non_terminal_states: set,
        failed_states: set,
        wait_for_completion: bool,
        check_interval: int,
        max_ingestion_time: int | None = None,
    ) -> Any:
        self._describe_interval = min(PROVIDER_LOG_DESCRIBE_S, float(check_interval))
        return super().check_training_status_with_log(
            job_name,
            non_terminal_states,
            failed_states,
            wait_for_completion,
            check_interval,
            max_ingestion_time,
        )

    def describe_training_job_with_log(
        self,
        job_name: str,
        positions: Any,
        stream_names: list,
        instance_count: int,
        state: int,
        last_description: dict,
        last_describe_job_call: float,
    ) -> tuple[int, dict, float]:
        """The provider's, with its 30 s between DescribeTrainingJob calls made ``check_interval``:
        the last call's time is handed to it that much earlier, and given back unshifted."""
        shifted = last_describe_job_call - (PROVIDER_LOG_DESCRIBE_S - self._describe_interval)
        state, description, called = super().describe_training_job_with_log(
            job_name, positions, stream_names, instance_count, state, last_description, shifted
        )
        return state, description, last_describe_job_call if called == shifted else called

    def tags(self, arn: str) -> dict[str, str]:
        return tags_as_dict(self.conn.list_tags(ResourceArn=arn).get("Tags", []))

    def add_tags(self, arn: str, values: Mapping[str, str]) -> None:
        self.conn.add_tags(ResourceArn=arn, Tags=tags(values))

    def copy_champion_tags(self, *, endpoint_name: str, endpoint_config_name: str) -> dict[str, str]:
        """Make the endpoint's champion tags those of the endpoint config it now serves.

        Each endpoint config is created with the tags of its model (``gate.champion_tags``),
        so a deploy and a rollback both end with tags that describe what is live.
        """
        config_arn = self.describe_endpoint_config(endpoint_config_name)["EndpointConfigArn"]
        endpoint_arn = self.describe_endpoint(endpoint_name)["EndpointArn"]
        config_tags = self.tags(config_arn)
        champion = {key: config_tags[key] for key in CHAMPION_TAG_KEYS if key in config_tags}
        if champion:
            self.add_tags(endpoint_arn, champion)
        return champion

    # -- the model registry ---------------------------------------------------------------------
    def find_model_package(self, group: str, key: str, value: str) -> dict | None:
        """The newest version of ``group`` whose customer metadata has ``key`` = ``value``
        (ListModelPackages has no such filter, so each version is described, newest first)."""
        pages = self.conn.get_paginator("list_model_packages").paginate(
            ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending"
        )
        for page in pages:
            for summary in page["ModelPackageSummaryList"]:
                package = self.describe_model_package(summary["ModelPackageArn"])
                if (package.get("CustomerMetadataProperties") or {}).get(key) == value:
                    return package
        return None

    def describe_model_package(self, arn: str) -> dict:
        return self.conn.describe_model_package(ModelPackageName=arn)

    def set_approval(self, arn: str, status: str, description: str) -> None:
        self.conn.update_model_package(
            ModelPackageArn=arn, ModelApprovalStatus=status, ApprovalDescription=description
        )

    def record_rollback(self, package_arn: str | None, *, endpoint_name: str, by: str, reason: str) -> str:
        """Write a rollback into the registry: the version rolled back off ``endpoint_name`` becomes
        ``Rejected``, its ApprovalDescription says by whom and why.

        Rejected, not Approved with a note: an Approved version is what deploys (the model and
        endpoint operators refuse any other) and what registry tooling takes as the latest
        deployable one, so a cleared task or a rerun of this run would put the model that alarms
        or the smoke test just took off the endpoint back in front of traffic. A person who
        decides the rollback was wrong sets it Approved again, on the record.

        Returns a sentence for the task's failure message ("" without a version). Never raises
        for the registry's sake: the rollback is the failure to report, and a retryable error here
        would let a retry deploy the same model again.
        """
        if not package_arn:
            return ""
        try:
            earlier = self.describe_model_package(package_arn)
            keep_earlier = earlier.get("ModelApprovalStatus") != REJECTED  # Rejected already: nothing to keep
            was = earlier.get("ApprovalDescription") if keep_earlier else None
            self.set_approval(package_arn, REJECTED, rollback_description(endpoint_name, by, reason, was))
        except (ClientError, BotoCoreError) as error:
            log.exception("Could not mark %s Rejected after the rollback", package_arn)
            return f"Model registry version {package_arn} could NOT be marked Rejected: {error}"
        log.warning("Model registry version %s is now Rejected: rolled back by %s", package_arn, by)
        return f"Model registry version {package_arn} is now Rejected."


class ApplicationAutoScalingHook(AwsBaseHook):
    """Application Auto Scaling (``boto3.client("application-autoscaling")``); the provider has no hook."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "application-autoscaling"
        super().__init__(*args, **kwargs)

    def deregister_variant(self, resource_id: str) -> bool:
        """Delete an endpoint variant's scaling policies and scalable target; True when there was one.

        UpdateEndpoint cannot change the instance type of an auto-scaled variant, so the
        pipeline calls this before such an update; the autoscale task registers it again.
        """
        scope = {
            "ServiceNamespace": SERVICE_NAMESPACE,
            "ScalableDimension": SCALABLE_DIMENSION,
        }
        if not self.conn.describe_scalable_targets(ResourceIds=[resource_id], **scope)["ScalableTargets"]:
            return False
        # AWS deletes a target's policies with it; deleting them first does not depend on that.
        policies = self.conn.describe_scaling_policies(ResourceId=resource_id, **scope)["ScalingPolicies"]
        for policy in policies:
            self.conn.delete_scaling_policy(PolicyName=policy["PolicyName"], ResourceId=resource_id, **scope)
        self.conn.deregister_scalable_target(ResourceId=resource_id, **scope)
        return True


class CloudWatchHook(AwsBaseHook):
    """CloudWatch (``boto3.client("cloudwatch")``): the rollback alarms; the provider has no hook."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "cloudwatch"
        super().__init__(*args, **kwargs)


class PipelineLambdaHook(LambdaHook):
    """LambdaHook that also finds the pipeline's custom waiters (``waiters/lambda.json``), the way
    the provider's hooks find theirs: ``get_waiter("ProvisionedConcurrencyReady")``."""

    @cached_property
    def waiter_path(self) -> Path:
        return WAITERS_DIR / "lambda.json"
