"""SageMaker Model Registry in local_aws, through boto3 (its paginator, botocore's waiter) and the AWS CLI.

Groups and versioned packages as AWS keeps them: versions numbered per group and never reused,
ARNs ``model-package/<group>/<version>``, List* filters, sorting and paging, approval updates,
the errors a caller meets for unknown groups and packages, tags on both; and CreateModel from a
package, served by a real model server that got its container from the package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from local_aws_hosting_support import model_archive

from local_aws.devtools.sandbox import client
from local_aws.protocol.server import LocalAwsServer
from local_aws.services import only

ACCOUNT, REGION = "123456789012", "us-east-1"
BUCKET = "registry"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sagemaker"
FAST_WAIT = {"Delay": 0.2, "MaxAttempts": 150}
HANDLER = textwrap.dedent(
    """
    import json, os
    def model_fn(model_dir):
        with open(os.path.join(model_dir, "label.txt")) as f:
            return f.read().strip()
    def input_fn(body, content_type):
        return body
    def predict_fn(data, model):
        return {"label": model, "flavour": os.environ.get("FLAVOUR"), "colour": os.environ.get("COLOUR")}
    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    services = only("sagemaker-tags", "model-registry", "hosting", "sagemaker-runtime")
    with LocalAwsServer(tmp_path_factory.mktemp("registry"), service_classes=services) as running:
        yield running


@pytest.fixture(scope="module")
def sm(server):
    return client("sagemaker", server.url, retries={"total_max_attempts": 1})


@pytest.fixture(scope="module")
def s3(server):
    s3 = client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    return s3


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def specification(model_data_url: str = f"s3://{BUCKET}/m/model.tar.gz", **environment: str) -> dict:
    return {
        "Containers": [{"Image": IMAGE, "ModelDataUrl": model_data_url, "Environment": environment}],
        "SupportedContentTypes": ["image/jpeg", "image/png"],
        "SupportedResponseMIMETypes": ["application/json"],
        "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
    }


def new_group(sm) -> str:
    name = unique("dogs")
    sm.create_model_package_group(ModelPackageGroupName=name, ModelPackageGroupDescription="dog breeds")
    return name


def register(sm, group: str, **extra: Any) -> str:
    return sm.create_model_package(
        ModelPackageGroupName=group, InferenceSpecification=specification(), **extra
    )["ModelPackageArn"]


def error_of(call) -> dict[str, str]:
    with pytest.raises(ClientError) as raised:
        call()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return raised.value.response["Error"]


def test_versions_are_numbered_per_group_and_never_reused(sm):
    first, second = new_group(sm), new_group(sm)
    arns = [register(sm, first) for _ in range(3)]
    assert arns == [f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{first}/{n}" for n in (1, 2, 3)]
    assert register(sm, second).endswith(f"/{second}/1"), "another group counts on its own"

    sm.delete_model_package(ModelPackageName=arns[2])
    assert register(sm, first).endswith(f"/{first}/4"), "a deleted version's number is not given again"
    described = sm.describe_model_package(ModelPackageName=f"{first}/2")  # <group>/<version> names it too
    assert (described["ModelPackageArn"], described["ModelPackageVersion"]) == (arns[1], 2)
    assert (described["ModelPackageName"], described["ModelPackageGroupName"]) == (first, first)
    assert described["ModelApprovalStatus"] == "PendingManualApproval", "a version's default status"
    assert described["ModelPackageStatus"] == "Completed"
    assert described["InferenceSpecification"] == specification()


def test_a_group_is_created_once_and_described(sm):
    group = new_group(sm)
    error = error_of(lambda: sm.create_model_package_group(ModelPackageGroupName=group.upper()))
    # The Amazon provider's SageMakerHook.create_model_package_group matches on this prefix.
    assert error["Code"] == "ValidationException"
    assert error["Message"].startswith("Model Package Group already exists")
    described = sm.describe_model_package_group(ModelPackageGroupName=group)
    assert (
        described["ModelPackageGroupArn"]
        == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package-group/{group}"
    )
    assert (described["ModelPackageGroupDescription"], described["ModelPackageGroupStatus"]) == (
        "dog breeds",
        "Completed",
    )
    by_arn = sm.describe_model_package_group(ModelPackageGroupName=described["ModelPackageGroupArn"])
    assert by_arn["ModelPackageGroupName"] == group


def test_unknown_groups_and_packages_are_validation_errors_that_name_them(sm):
    missing = unique("nowhere")
    for call in (
        lambda: sm.describe_model_package_group(ModelPackageGroupName=missing),
        lambda: sm.create_model_package(
            ModelPackageGroupName=missing, InferenceSpecification=specification()
        ),
        lambda: sm.delete_model_package_group(ModelPackageGroupName=missing),
    ):
        error = error_of(call)
        assert error["Code"] == "ValidationException" and f"model-package-group/{missing}" in error["Message"]
    group = new_group(sm)
    unknown = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{group}/7"
    for call in (
        lambda: sm.describe_model_package(ModelPackageName=unknown),
        lambda: sm.update_model_package(ModelPackageArn=unknown, ModelApprovalStatus="Approved"),
        lambda: sm.delete_model_package(ModelPackageName=f"{group}/7"),
    ):
        error = error_of(call)
        assert error["Code"] == "ValidationException" and unknown in error["Message"]
    other_account = unknown.replace(ACCOUNT, "210987654321").replace("/7", "/1")
    register(sm, group)
    assert error_of(lambda: sm.describe_model_package(ModelPackageName=other_account))["Code"] == (
        "ValidationException"
    )
    both = error_of(lambda: sm.create_model_package(ModelPackageGroupName=group, ModelPackageName="x"))
    assert "Both ModelPackageName and ModelPackageGroupName" in both["Message"]
    assert "Missing ARN" in error_of(lambda: sm.create_model_package())["Message"]
    not_s3 = specification("https://example.com/model.tar.gz")
    refused = error_of(
        lambda: sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=not_s3)
    )
    assert "S3" in refused["Message"]


def test_list_filters_by_group_status_time_and_type_sorts_and_pages(sm):
    group, other = new_group(sm), new_group(sm)
    arns = [register(sm, group) for _ in range(5)]
    register(sm, other)
    sm.update_model_package(ModelPackageArn=arns[1], ModelApprovalStatus="Approved")
    sm.update_model_package(ModelPackageArn=arns[3], ModelApprovalStatus="Approved")
    sm.update_model_package(ModelPackageArn=arns[4], ModelApprovalStatus="Rejected")
    unversioned = sm.create_model_package(
        ModelPackageName=unique("solo"), InferenceSpecification=specification()
    )

    def listed(**request: Any) -> list[str]:
        pages = sm.get_paginator("list_model_packages").paginate(**request, PaginationConfig={"PageSize": 2})
        return [summary["ModelPackageArn"] for page in pages for summary in page["ModelPackageSummaryList"]]

    assert listed(ModelPackageGroupName=group) == arns, "the group's versions, oldest first by default"
    assert listed(ModelPackageGroupName=group, SortOrder="Descending") == arns[::-1]
    group_arn = sm.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
    assert listed(ModelPackageGroupName=group_arn, ModelApprovalStatus="Approved") == [arns[1], arns[3]]
    assert listed(ModelPackageGroupName=group, ModelApprovalStatus="PendingManualApproval") == [
        arns[0],
        arns[2],
    ]
    created = [sm.describe_model_package(ModelPackageName=arn)["CreationTime"] for arn in arns]
    assert listed(ModelPackageGroupName=group, CreationTimeAfter=created[2]) == arns[3:]
    assert listed(ModelPackageGroupName=group, CreationTimeBefore=created[1]) == arns[:1]
    assert listed(ModelPackageGroupName=unique("nowhere")) == [], "an unknown group filters to nothing"
    assert unversioned["ModelPackageArn"] in listed(), "no group, no type: unversioned packages"
    assert not set(arns) & set(listed())
    assert set(arns) | {unversioned["ModelPackageArn"]} <= set(listed(ModelPackageType="Both"))
    assert set(arns) <= set(listed(ModelPackageType="Versioned", NameContains=group[-8:].upper()))

    (summary,) = sm.list_model_packages(ModelPackageGroupName=group, ModelApprovalStatus="Rejected")[
        "ModelPackageSummaryList"
    ]
    assert summary["ModelPackageVersion"] == 5 and summary["ModelPackageGroupName"] == group
    error = error_of(lambda: sm.list_model_packages(NextToken="not-a-token"))
    assert error["Code"] == "ValidationException"


def test_groups_list_sorted_and_paged(sm):
    names = sorted(new_group(sm) for _ in range(3))
    pages = sm.get_paginator("list_model_package_groups").paginate(
        SortBy="Name", PaginationConfig={"PageSize": 1}
    )
    listed = [g["ModelPackageGroupName"] for page in pages for g in page["ModelPackageGroupSummaryList"]]
    assert [name for name in listed if name in names] == names
    assert (
        sm.list_model_package_groups(CrossAccountFilterOption="CrossAccount")["ModelPackageGroupSummaryList"]
        == []
    )


def test_an_update_sets_the_approval_and_merges_customer_metadata(sm):
    group = new_group(sm)
    arn = register(sm, group, CustomerMetadataProperties={"TrainingJobName": "job-1", "DagRunId": "r1"})
    before = sm.describe_model_package(ModelPackageName=arn)
    assert "LastModifiedTime" not in before

    answer = sm.update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus="Rejected",
        ApprovalDescription="Rejected by the quality gate: accuracy 0.41 below 0.70",
        CustomerMetadataProperties={"TestAccuracy": "0.41"},
        CustomerMetadataPropertiesToRemove=["DagRunId"],
    )
    assert answer["ModelPackageArn"] == arn
    after = sm.describe_model_package(ModelPackageName=arn)
    assert after["ModelApprovalStatus"] == "Rejected"
    assert after["ApprovalDescription"] == "Rejected by the quality gate: accuracy 0.41 below 0.70"
    assert after["CustomerMetadataProperties"] == {"TrainingJobName": "job-1", "TestAccuracy": "0.41"}
    assert after["LastModifiedTime"] >= after["CreationTime"]

    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    again = sm.describe_model_package(ModelPackageName=arn)
    assert again["ModelApprovalStatus"] == "Approved"
    assert again["ApprovalDescription"] == after["ApprovalDescription"], "kept unless given"
    clash = error_of(
        lambda: sm.update_model_package(
            ModelPackageArn=arn,
            CustomerMetadataProperties={"k": "v"},
            CustomerMetadataPropertiesToRemove=["k"],
        )
    )
    assert "both added and removed" in clash["Message"]
    solo = sm.create_model_package(ModelPackageName=unique("solo"))["ModelPackageArn"]
    refused = error_of(lambda: sm.update_model_package(ModelPackageArn=solo, ModelApprovalStatus="Approved"))
    assert "versioned" in refused["Message"]


def test_a_group_with_versions_cannot_be_deleted(sm):
    group = new_group(sm)
    arns = [register(sm, group) for _ in range(2)]
    with pytest.raises(ClientError) as raised:
        sm.delete_model_package_group(ModelPackageGroupName=group)
    assert raised.value.response["Error"]["Code"] == "ConflictException"
    assert "[1, 2]" in raised.value.response["Error"]["Message"]
    for arn in arns:
        sm.delete_model_package(ModelPackageName=arn)
    sm.delete_model_package_group(ModelPackageGroupName=group)
    assert error_of(lambda: sm.describe_model_package_group(ModelPackageGroupName=group))["Code"] == (
        "ValidationException"
    )


def test_groups_and_packages_carry_tags(sm):
    group = unique("tagged")
    group_arn = sm.create_model_package_group(
        ModelPackageGroupName=group, Tags=[{"Key": "project", "Value": "dog-breed-pipeline"}]
    )["ModelPackageGroupArn"]
    arn = register(sm, group, Tags=[{"Key": "run", "Value": "r1"}])
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "dog-breed:stage", "Value": "review"}])
    assert sm.list_tags(ResourceArn=group_arn)["Tags"] == [{"Key": "project", "Value": "dog-breed-pipeline"}]
    assert {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]} == {
        "run": "r1",
        "dog-breed:stage": "review",
    }
    sm.delete_model_package(ModelPackageName=arn)
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [], "a deleted package's tags go with it"


def test_a_model_from_a_package_serves_the_packages_container(server, sm, s3):
    """CreateModel with ModelPackageName takes image, model data and environment from the package
    (the container's own Environment on top); like SageMaker it does not ask for approval."""
    group = new_group(sm)
    key = f"{group}/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=model_archive("from-the-registry", HANDLER))
    spec = specification(
        f"s3://{BUCKET}/{key}", SAGEMAKER_PROGRAM="inference.py", FLAVOUR="package", COLOUR="red"
    )
    arn = sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=spec)["ModelPackageArn"]
    model = unique("m")
    sm.create_model(
        ModelName=model,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"ModelPackageName": arn, "Environment": {"COLOUR": "blue"}},
    )
    assert sm.describe_model(ModelName=model)["PrimaryContainer"] == {
        "ModelPackageName": arn,
        "Environment": {"COLOUR": "blue"},
    }
    variant = {"VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1,
               "InstanceType": "ml.m5.large"}  # fmt: skip
    sm.create_endpoint_config(EndpointConfigName=model, ProductionVariants=[variant])
    sm.create_endpoint(EndpointName=model, EndpointConfigName=model)
    try:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=model, WaiterConfig=FAST_WAIT)
        answer = client("sagemaker-runtime", server.url).invoke_endpoint(
            EndpointName=model, ContentType="application/json", Body=b"{}"
        )
        assert json.loads(answer["Body"].read()) == {"label": "from-the-registry", "flavour": "package",
                                                     "colour": "blue"}  # fmt: skip
    finally:
        sm.delete_endpoint(EndpointName=model)


def test_a_model_from_a_package_takes_nothing_else_and_needs_a_known_package(sm):
    group = new_group(sm)
    arn = register(sm, group)
    both = error_of(
        lambda: sm.create_model(
            ModelName=unique("m"),
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"ModelPackageName": arn, "Image": IMAGE},
        )
    )
    assert "ModelPackageName" in both["Message"] and "Image" in both["Message"]
    missing = f"{arn[: arn.rindex('/')]}/99"
    unknown = error_of(
        lambda: sm.create_model(
            ModelName=unique("m"), ExecutionRoleArn=ROLE, PrimaryContainer={"ModelPackageName": missing}
        )
    )
    assert unknown["Code"] == "ValidationException" and missing in unknown["Message"]
    empty = sm.create_model_package(ModelPackageGroupName=group)["ModelPackageArn"]
    nothing = error_of(
        lambda: sm.create_model(
            ModelName=unique("m"), ExecutionRoleArn=ROLE, PrimaryContainer={"ModelPackageName": empty}
        )
    )
    assert "InferenceSpecification" in nothing["Message"]


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_the_aws_cli_lists_a_groups_versions_with_their_status(server, sm):
    group = new_group(sm)
    arns = [register(sm, group) for _ in range(2)]
    sm.update_model_package(ModelPackageArn=arns[0], ModelApprovalStatus="Approved")
    environment = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_PAGER": "",
    }
    command = ["aws", "--endpoint-url", server.url, "sagemaker", "list-model-packages",
               "--model-package-group-name", group, "--page-size", "1"]  # fmt: skip
    completed = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    summaries = json.loads(completed.stdout)["ModelPackageSummaryList"]
    assert [(s["ModelPackageVersion"], s["ModelApprovalStatus"]) for s in summaries] == [
        (1, "Approved"),
        (2, "PendingManualApproval"),
    ]
    assert all(summary["ModelPackageArn"] in arns for summary in summaries)
