"""IAM documents: least privilege, valid for IAM (moto parses them on CreatePolicy)."""

from __future__ import annotations

import json

import airflow_fixtures  # noqa: F401  (fake credentials before boto3)
import boto3
import pytest
from moto import mock_aws

from dog_breed.policies import (
    airflow_worker_policy,
    lambda_invoke_endpoint_policy,
    sagemaker_execution_policy,
    trust_policy,
)
from dog_breed.s3uri import split_s3_uri

ARGS = {"region": "us-east-1", "account": "123456789012"}


def test_lambda_policy_invokes_exactly_one_endpoint_and_writes_only_its_logs():
    doc = lambda_invoke_endpoint_policy(**ARGS, endpoint_name="Dog-Breed", function_name="fn")
    actions = {}
    for statement in doc["Statement"]:
        for action in [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]:
            actions[action] = statement["Resource"]
    assert (
        actions["sagemaker:InvokeEndpoint"] == "arn:aws:sagemaker:us-east-1:123456789012:endpoint/dog-breed"
    )
    assert set(actions) == {
        "sagemaker:InvokeEndpoint",
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    assert all("/aws/lambda/fn" in actions[a] for a in actions if a.startswith("logs:"))
    assert "*" not in json.dumps([s["Resource"] for s in doc["Statement"]]).replace(":log-stream:*", "")


def test_sagemaker_policy_is_scoped_to_the_dataset_and_artifacts_prefixes():
    doc = sagemaker_execution_policy(
        **ARGS, dataset_s3_uri="s3://data/dogImages", artifacts_s3_uri="s3://out/art"
    )
    resources = json.dumps(doc)
    assert "arn:aws:s3:::data/dogImages/*" in resources and "arn:aws:s3:::out/art/*" in resources
    writes = [s for s in doc["Statement"] if "s3:PutObject" in s["Action"]]
    assert [s["Resource"] for s in writes] == ["arn:aws:s3:::out/art/*"]


def test_worker_policy_passes_only_the_two_roles():
    doc = airflow_worker_policy(
        **ARGS,
        dataset_s3_uri="s3://data/dogImages",
        artifacts_s3_uri="s3://out/art",
        sagemaker_role_arn="arn:aws:iam::123456789012:role/sm",
        endpoint_name="ep",
        function_name="fn",
        model_package_group="dog-breed-classifier",
    )
    passes = [s["Resource"] for s in doc["Statement"] if s["Action"] == "iam:PassRole"]
    assert passes == ["arn:aws:iam::123456789012:role/sm", "arn:aws:iam::123456789012:role/fn-lambda-role"]


@mock_aws
def test_every_document_is_accepted_by_iam():
    iam = boto3.client("iam", region_name="us-east-1")
    documents = {
        "lambda": lambda_invoke_endpoint_policy(**ARGS, endpoint_name="ep", function_name="fn"),
        "sagemaker": sagemaker_execution_policy(**ARGS, dataset_s3_uri="s3://d/x", artifacts_s3_uri="s3://o"),
        "worker": airflow_worker_policy(
            **ARGS,
            dataset_s3_uri="s3://d/x",
            artifacts_s3_uri="s3://o/y",
            sagemaker_role_arn="arn:aws:iam::123456789012:role/sm",
            endpoint_name="ep",
            function_name="fn",
            model_package_group="dog-breed-classifier",
        ),
    }
    for name, document in documents.items():
        iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))
    iam.create_role(RoleName="r", AssumeRolePolicyDocument=json.dumps(trust_policy("lambda.amazonaws.com")))


def test_split_s3_uri():
    assert split_s3_uri("s3://b/a/b/") == ("b", "a/b")
    assert split_s3_uri("s3://b") == ("b", "")
    with pytest.raises(ValueError):
        split_s3_uri("https://b/a")
