"""Shared by the local_aws training and tuning tests: a server, clients, fake entry points."""

from __future__ import annotations

import io
import tarfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import WaiterError

from local_aws.protocol.server import LocalAwsServer
from local_aws.services import only

BUCKET = "sm-test"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
SAGEMAKER_SERVICES = only("sagemaker-tags", "training", "tuning")
METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": r"train_loss=([0-9.]+)"},
    {"Name": "valid:loss", "Regex": r"valid_loss=([0-9.]+)"},
    {"Name": "valid:accuracy", "Regex": r"valid_accuracy=([0-9.]+)"},
]


def client(server: LocalAwsServer, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


@pytest.fixture(name="local_aws")
def local_aws_fixture(tmp_path: Path) -> Iterator[LocalAwsServer]:
    server = LocalAwsServer(tmp_path / "state", service_classes=SAGEMAKER_SERVICES).start()
    server.app.context.services["training"].stop_grace_seconds = 2.0
    s3 = client(server, "s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="data/train/a/one.txt", Body=b"first")
    s3.put_object(Bucket=BUCKET, Key="data/train/b/two.txt", Body=b"second")
    s3.put_object(Bucket=BUCKET, Key="data/valid/a/three.txt", Body=b"third")
    try:
        yield server
    finally:
        server.stop()


def upload_source(
    server: LocalAwsServer, script: str, name: str = "train.py", extra: dict | None = None
) -> str:
    """Pack ``script`` (and ``extra`` files) as sourcedir.tar.gz in S3; return its URI."""
    files = {name: textwrap.dedent(script), **(extra or {})}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for file_name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(file_name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    key = f"code/{uuid.uuid4().hex}/sourcedir.tar.gz"
    client(server, "s3").put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return f"s3://{BUCKET}/{key}"


def training_request(
    name: str,
    source_uri: str,
    hyperparameters: dict[str, str] | None = None,
    instance_count: int = 1,
    max_runtime: int = 120,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311",
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "RoleArn": ROLE,
        "HyperParameters": {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": f'"{source_uri}"',
            **(hyperparameters or {}),
        },
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/data/{channel}",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel in ("train", "valid")
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {
            "InstanceType": "ml.m5.large",
            "InstanceCount": instance_count,
            "VolumeSizeInGB": 5,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
        **extra,
    }


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def wait_for_training(sagemaker: Any, name: str, timeout: int = 60) -> dict[str, Any]:
    """botocore's own waiter is the specification of the statuses."""
    waiter = sagemaker.get_waiter("training_job_completed_or_stopped")
    try:
        waiter.wait(TrainingJobName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": timeout * 5})
    except WaiterError as error:
        if error.last_response.get("TrainingJobStatus") != "Failed":
            raise
    return sagemaker.describe_training_job(TrainingJobName=name)
