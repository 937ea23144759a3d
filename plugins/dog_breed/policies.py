"""Least-privilege IAM documents the pipeline creates or needs."""

from __future__ import annotations

from typing import Any

from dog_breed.naming import lambda_role_name, rollback_alarm_prefix
from dog_breed.s3uri import split_s3_uri
from dog_breed.specs import endpoint_arn, variant_resource_id

VERSION = "2012-10-17"


def trust_policy(service: str) -> dict[str, Any]:
    """Who may assume a role: one AWS service principal."""
    return {
        "Version": VERSION,
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"},
        ],
    }


def lambda_invoke_endpoint_policy(
    *, region: str, account: str, endpoint_name: str, function_name: str
) -> dict:
    """The Lambda role: invoke this one endpoint, write this function's logs, nothing else."""
    log_group = f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{function_name}"
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "InvokeThisEndpoint",
                "Effect": "Allow",
                "Action": "sagemaker:InvokeEndpoint",
                "Resource": endpoint_arn(region, account, endpoint_name),
            },
            {
                "Sid": "CreateOwnLogGroup",
                "Effect": "Allow",
                "Action": "logs:CreateLogGroup",
                "Resource": log_group,
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group}:log-stream:*",
            },
        ],
    }


def _s3_statements(sid: str, uri: str, actions: list[str]) -> list[dict[str, Any]]:
    bucket, prefix = split_s3_uri(uri)
    objects = f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"
    listing: dict[str, Any] = {
        "Sid": f"List{sid}",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": f"arn:aws:s3:::{bucket}",
    }
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}
    return [listing, {"Sid": f"Objects{sid}", "Effect": "Allow", "Action": actions, "Resource": objects}]


def sagemaker_execution_policy(
    *, region: str, account: str, dataset_s3_uri: str, artifacts_s3_uri: str
) -> dict:
    """Inline policy of the SageMaker execution role: read the dataset, read/write the artifacts
    prefix, write its logs and metrics, pull the AWS Deep Learning / Debugger images."""
    return {
        "Version": VERSION,
        "Statement": [
            *_s3_statements("Dataset", dataset_s3_uri, ["s3:GetObject"]),
            *_s3_statements(
                "Artifacts", artifacts_s3_uri, ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
            ),
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                "Resource": f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/*",
            },
            {"Sid": "Metrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
            {
                "Sid": "PullImages",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                "Resource": "*",
            },
            {
                # Debugger rule jobs and tuning trials are started by SageMaker on the job's behalf.
                "Sid": "DebuggerRuleJobs",
                "Effect": "Allow",
                "Action": ["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob"],
                "Resource": f"arn:aws:sagemaker:{region}:{account}:processing-job/*",
            },
        ],
    }


def airflow_worker_policy(
    *,
    region: str,
    account: str,
    dataset_s3_uri: str,
    artifacts_s3_uri: str,
    sagemaker_role_arn: str,
    endpoint_name: str,
    function_name: str,
    model_package_group: str,
) -> dict:
    """What the Airflow worker (the aws_default connection) calls, and nothing more."""
    sm = f"arn:aws:sagemaker:{region}:{account}"
    group = model_package_group.lower()  # SageMaker lower-cases names in ARNs
    lambda_role = f"arn:aws:iam::{account}:role/{lambda_role_name(function_name)}"
    function = f"arn:aws:lambda:{region}:{account}:function:{function_name}"
    alarms = f"arn:aws:cloudwatch:{region}:{account}:alarm"
    return {
        "Version": VERSION,
        "Statement": [
            *_s3_statements("Dataset", dataset_s3_uri, ["s3:GetObject"]),
            *_s3_statements("Artifacts", artifacts_s3_uri, ["s3:GetObject", "s3:PutObject"]),
            {
                "Sid": "SageMakerJobsAndHosting",
                "Effect": "Allow",
                "Action": [
                    "sagemaker:CreateHyperParameterTuningJob",
                    "sagemaker:DescribeHyperParameterTuningJob",
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:CreateModel",
                    "sagemaker:DescribeModel",
                    "sagemaker:CreateEndpointConfig",
                    "sagemaker:DescribeEndpointConfig",
                    "sagemaker:CreateEndpoint",
                    "sagemaker:UpdateEndpoint",
                    "sagemaker:DescribeEndpoint",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                "Resource": [
                    f"{sm}:hyper-parameter-tuning-job/*",
                    f"{sm}:training-job/*",
                    f"{sm}:model/*",
                    f"{sm}:endpoint-config/*",
                    f"{sm}:endpoint/{endpoint_name.lower()}",
                ],
            },
            {
                # Register each model as a version of this one group, read and approve its versions.
                "Sid": "ModelRegistry",
                "Effect": "Allow",
                "Action": [
                    "sagemaker:CreateModelPackageGroup",
                    "sagemaker:DescribeModelPackageGroup",
                    "sagemaker:CreateModelPackage",
                    "sagemaker:DescribeModelPackage",
                    "sagemaker:UpdateModelPackage",
                ],
                "Resource": [f"{sm}:model-package-group/{group}", f"{sm}:model-package/{group}/*"],
            },
            {
                # Finding a retried registration's version; AWS scopes ListModelPackages to no resource.
                "Sid": "ListModelVersions",
                "Effect": "Allow",
                "Action": "sagemaker:ListModelPackages",
                "Resource": "*",
            },
            {
                "Sid": "TrainingLogs",
                "Effect": "Allow",
                "Action": ["logs:DescribeLogStreams", "logs:GetLogEvents"],
                "Resource": f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/TrainingJobs:*",
            },
            {
                "Sid": "PassSageMakerRole",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": sagemaker_role_arn,
                "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            },
            {
                "Sid": "ManageLambdaRole",
                "Effect": "Allow",
                "Action": [
                    "iam:GetRole",
                    "iam:CreateRole",
                    "iam:UpdateAssumeRolePolicy",
                    "iam:PutRolePolicy",
                    "iam:GetRolePolicy",
                ],
                "Resource": lambda_role,
            },
            {
                "Sid": "PassLambdaRole",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": lambda_role,
                "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
            },
            {
                "Sid": "DeployAndInvokeLambda",
                "Effect": "Allow",
                "Action": [
                    "lambda:GetFunction",
                    "lambda:GetFunctionConfiguration",
                    "lambda:CreateFunction",
                    "lambda:UpdateFunctionCode",
                    "lambda:UpdateFunctionConfiguration",
                    "lambda:PublishVersion",
                    "lambda:GetAlias",
                    "lambda:CreateAlias",
                    "lambda:UpdateAlias",
                    "lambda:PutProvisionedConcurrencyConfig",
                    "lambda:GetProvisionedConcurrencyConfig",
                    "lambda:DeleteProvisionedConcurrencyConfig",
                    "lambda:InvokeFunction",
                ],
                "Resource": [function, f"{function}:*"],
            },
            {
                "Sid": "Autoscaling",
                "Effect": "Allow",
                "Action": [
                    "application-autoscaling:RegisterScalableTarget",
                    "application-autoscaling:DeregisterScalableTarget",
                    "application-autoscaling:DescribeScalableTargets",
                    "application-autoscaling:PutScalingPolicy",
                    "application-autoscaling:DescribeScalingPolicies",
                    "application-autoscaling:DeleteScalingPolicy",
                ],
                "Resource": "*",
            },
            {
                # RegisterScalableTarget creates this service-linked role on first use.
                "Sid": "AutoscalingServiceLinkedRole",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": (
                    f"arn:aws:iam::{account}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
                ),
                "Condition": {
                    "StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}
                },
            },
            {
                # The rollback alarms the DAG keeps, and the ones target tracking creates on the
                # caller's behalf (TargetTracking-<resource id>-AlarmHigh/Low-<uuid>): this endpoint's only.
                "Sid": "EndpointAlarms",
                "Effect": "Allow",
                "Action": [
                    "cloudwatch:PutMetricAlarm",
                    "cloudwatch:DescribeAlarms",
                    "cloudwatch:DeleteAlarms",
                ],
                "Resource": [
                    f"{alarms}:{rollback_alarm_prefix(endpoint_name)}*",
                    f"{alarms}:TargetTracking-{variant_resource_id(endpoint_name, '')}*",
                ],
            },
            {"Sid": "WhoAmI", "Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"},
        ],
    }
