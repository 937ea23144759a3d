"""The model registry as ``make demo`` shows it: the group, each version's approval and metrics,
and which one the endpoint serves, read through the SageMaker API like from AWS."""

from __future__ import annotations

from typing import Any

# The tag the pipeline puts on the endpoint (plugins/dog_breed/gate.py TAG_MODEL_PACKAGE_ARN).
LIVE_PACKAGE_TAG = "dog-breed:model-package-arn"


def registry_summary(sagemaker: Any, group: str, endpoint_name: str) -> dict[str, Any]:
    """Group, versions oldest first (status, approval description, test metrics, training job) and
    the live one; ``error`` instead when the group cannot be read."""
    try:
        described = sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    except sagemaker.exceptions.ClientError as error:
        return {"group": group, "error": str(error)}
    live = _live_package(sagemaker, endpoint_name)
    pages = sagemaker.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
    versions = []
    for page in pages:
        for item in page["ModelPackageSummaryList"]:
            package = sagemaker.describe_model_package(ModelPackageName=item["ModelPackageArn"])
            metadata = package.get("CustomerMetadataProperties") or {}
            versions.append(
                {
                    "version": package.get("ModelPackageVersion"),
                    "status": package.get("ModelApprovalStatus"),
                    "approval": package.get("ApprovalDescription"),
                    "test_accuracy": _number(metadata.get("TestAccuracy")),
                    "test_loss": _number(metadata.get("TestLoss")),
                    "training_job": metadata.get("TrainingJobName"),
                    "live": package["ModelPackageArn"] == live,
                    "arn": package["ModelPackageArn"],
                }
            )
    return {
        "group": group,
        "description": described.get("ModelPackageGroupDescription"),
        "versions": versions,
        "live_version": next((v["version"] for v in versions if v["live"]), None),
    }


def _live_package(sagemaker: Any, endpoint_name: str) -> str | None:
    try:
        arn = sagemaker.describe_endpoint(EndpointName=endpoint_name)["EndpointArn"]
    except sagemaker.exceptions.ClientError:
        return None
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn).get("Tags", [])}
    return tags.get(LIVE_PACKAGE_TAG)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
