"""The CreateTrainingJob rules beyond the model's, which local_aws runs by."""

from __future__ import annotations

import re
from typing import Any

from local_aws.protocol.errors import AwsError, validation_error
from local_aws.services.sagemaker.api import s3_location
from local_aws.services.sagemaker.training.toolkit import decode_hyperparameters

DEFAULT_MAX_RUNTIME_SECONDS = 86400
# ProfilerConfig.ProfilingIntervalInMilliseconds: the values the API documents.
PROFILING_INTERVALS_MS = (100, 200, 500, 1000, 5000, 60000)
MAX_LOCAL_INSTANCES = 8  # processes on one machine; more would only thrash


def checked_training_request(request: dict[str, Any]) -> dict[str, Any]:
    """The rules beyond the model's (which the protocol layer checked) that local_aws runs by;
    returns the request with SageMaker's defaults filled in."""
    for needed in ("AlgorithmSpecification", "ResourceConfig"):  # optional in the model, not here
        if not request.get(needed):
            raise validation_error(f"{needed} is required.")
    s3_location(request["OutputDataConfig"]["S3OutputPath"])
    algorithm = request["AlgorithmSpecification"]
    resources = request["ResourceConfig"]
    if not resources.get("InstanceType"):
        raise validation_error("ResourceConfig.InstanceType is required (local_aws has no instance groups).")
    count = resources.get("InstanceCount", 1)
    if count < 1:
        raise validation_error("ResourceConfig.InstanceCount must be at least 1.")
    if count > MAX_LOCAL_INSTANCES:
        raise AwsError(
            "ResourceLimitExceeded",
            f"local_aws runs at most {MAX_LOCAL_INSTANCES} instances per training job on one machine.",
        )
    for definition in algorithm.get("MetricDefinitions", []):
        try:
            re.compile(definition["Regex"])
        except re.error as error:
            raise validation_error(f"Invalid regex for metric {definition['Name']!r}: {error}") from error
    _check_channels(request.get("InputDataConfig", []), algorithm["TrainingInputMode"])
    _check_profiler(request)
    decoded = decode_hyperparameters(request.get("HyperParameters", {}))
    for key in ("sagemaker_program", "sagemaker_submit_directory"):
        if not decoded.get(key):
            raise validation_error(
                f"local_aws runs script-mode training only: HyperParameters must include {key} "
                "(it cannot run a training image's own entry point)."
            )
    s3_location(str(decoded["sagemaker_submit_directory"]))
    stopping = dict(request.get("StoppingCondition") or {})
    stopping.setdefault("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
    if request.get("EnableManagedSpotTraining"):
        max_wait = stopping.get("MaxWaitTimeInSeconds")
        if max_wait is None or max_wait < stopping["MaxRuntimeInSeconds"]:
            raise validation_error(
                "Managed spot training needs StoppingCondition.MaxWaitTimeInSeconds >= MaxRuntimeInSeconds."
            )
    resources = {"VolumeSizeInGB": 30, **resources, "InstanceCount": count}
    return {**request, "StoppingCondition": stopping, "ResourceConfig": resources}


def _check_profiler(request: dict[str, Any]) -> None:
    config = request.get("ProfilerConfig")
    if config and not config.get("DisableProfiler"):
        if not config.get("S3OutputPath"):
            raise validation_error(
                "ProfilerConfig.S3OutputPath is required unless DisableProfiler is set (local_aws has no "
                "default bucket for the system metrics)."
            )
        s3_location(config["S3OutputPath"])
        interval = config.get("ProfilingIntervalInMilliseconds")
        if interval is not None and interval not in PROFILING_INTERVALS_MS:
            allowed = ", ".join(map(str, PROFILING_INTERVALS_MS))
            raise validation_error(
                f"ProfilerConfig.ProfilingIntervalInMilliseconds must be one of {allowed}, not {interval}."
            )
    for rule in request.get("ProfilerRuleConfigurations") or []:
        if rule.get("S3OutputPath"):
            s3_location(rule["S3OutputPath"])


def _check_channels(channels: list[dict[str, Any]], default_mode: str) -> None:
    names: set[str] = set()
    for channel in channels:
        name = channel["ChannelName"]
        if name in names:
            raise validation_error(f"Channel names must be unique: {name!r} appears twice.")
        names.add(name)
        mode = channel.get("InputMode", default_mode)
        if mode not in ("File", "FastFile"):
            raise validation_error(f"local_aws supports File and FastFile input modes, not {mode} ({name}).")
        source = channel["DataSource"]
        if "S3DataSource" not in source:
            raise validation_error(f"local_aws supports S3DataSource channels only ({name}).")
        s3 = source["S3DataSource"]
        if s3["S3DataType"] not in ("S3Prefix", "ManifestFile"):
            raise validation_error(f"local_aws does not support S3DataType {s3['S3DataType']} ({name}).")
        s3_location(s3["S3Uri"])
