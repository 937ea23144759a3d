"""One deployed chain for the reliability tests: local_aws in-process, the tiny model on an
endpoint, and the Lambda from ``model_scripts/lambda_function.py`` in front of it.

Set up the way the pipeline deploys (model archive in S3, CreateModel / CreateEndpointConfig /
CreateEndpoint, a Lambda role in IAM, CreateFunction with ENDPOINT_NAME), but with plain
boto3 so each test module pays for one endpoint and one Lambda, not one DAG run.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from serving_contract import SERVING_CODE

from dog_breed.operators.lambda_deploy import HANDLER, RUNTIME, build_zip
from dog_breed.policies import trust_policy
from local_aws.infra.clock import Clock
from local_aws.protocol.server import LocalAwsServer

REPO = Path(__file__).resolve().parent.parent
MODEL_SCRIPTS = REPO / "model_scripts"
REGION = "us-east-1"
BUCKET = "reliability-models"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5-cpu-py311"
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/DogBreedSageMakerExecution"
FAST_WAIT = {"Delay": 0.5, "MaxAttempts": 240}


def client(url: str, service: str, read_timeout: float = 90, attempts: int = 1) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": attempts}, read_timeout=read_timeout),
    )


def model_archive(model_dir: Path) -> bytes:
    """model.tar.gz as the training job writes it: weights and config at the root, handlers in code/."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            tar.add(path, arcname=path.relative_to(model_dir).as_posix())
        present = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")}
        for name in SERVING_CODE:  # what the PyTorch container finds under /opt/ml/model/code
            if f"code/{name}" not in present:
                tar.add(MODEL_SCRIPTS / name, arcname=f"code/{name}")
    return buffer.getvalue()


def register_model_and_config(
    sagemaker: Any, name: str, model_data_url: str, instances: int = 1, role: str = EXECUTION_ROLE
) -> None:
    """CreateModel for a PyTorch-convention model.tar.gz and an ml.m5.large endpoint config, both ``name``."""
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=role,
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": model_data_url,
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
        },
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": instances,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": 1.0,
            }
        ],
    )


def create_endpoint_config(url: str, model_dir: Path, label: str, instances: int = 1) -> str:
    """A model from ``model_dir`` and an endpoint config serving it; returns the config name."""
    sagemaker, s3 = client(url, "sagemaker"), client(url, "s3")
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)
    name = f"{label}-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=BUCKET, Key=f"{name}/model.tar.gz", Body=model_archive(model_dir))
    register_model_and_config(sagemaker, name, f"s3://{BUCKET}/{name}/model.tar.gz", instances)
    return name


def deploy_endpoint(url: str, endpoint_name: str, model_dir: Path, instances: int = 1) -> str:
    """Create the endpoint and wait InService; returns its endpoint config name."""
    config = create_endpoint_config(url, model_dir, "reliability", instances)
    sagemaker = client(url, "sagemaker")
    sagemaker.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config)
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=endpoint_name, WaiterConfig=FAST_WAIT)
    return config


def deploy_lambda(url: str, function_name: str, endpoint_name: str) -> str:
    """The Lambda from model_scripts with its own role; returns the function ARN once Active."""
    iam, lam = client(url, "iam"), client(url, "lambda")
    role = iam.create_role(
        RoleName=f"{function_name}-role",
        AssumeRolePolicyDocument=json.dumps(trust_policy("lambda.amazonaws.com")),
    )["Role"]["Arn"]
    created = lam.create_function(
        FunctionName=function_name,
        Runtime=RUNTIME,
        Handler=HANDLER,
        Role=role,
        Code={"ZipFile": build_zip(MODEL_SCRIPTS / "lambda_function.py")},
        Timeout=60,
        MemorySize=512,
        Environment={"Variables": {"ENDPOINT_NAME": endpoint_name}},
    )
    lam.get_waiter("function_active_v2").wait(FunctionName=function_name, WaiterConfig=FAST_WAIT)
    return created["FunctionArn"]


@dataclass
class ServedModel:
    url: str
    endpoint_name: str
    endpoint_config: str
    function_name: str
    model_dir: Path
    server: LocalAwsServer

    def client(self, service: str, **kwargs: Any) -> Any:
        return client(self.url, service, **kwargs)

    def model_server_pids(self) -> set[int]:
        """PIDs of the model-server processes behind the endpoint, from the hosting service."""
        return self.server.app.context.services["hosting"].instance_pids(self.endpoint_name)


def serve_model(
    state_dir: Path, model_dir: Path, instances: int = 1, with_lambda: bool = True, clock: Clock | None = None
) -> ServedModel:
    """Start local_aws (on ``clock``'s time scale) and deploy the endpoint (and the Lambda); stop
    with ``served.server.stop()``."""
    server = LocalAwsServer(state_dir, clock=clock).start()
    try:
        suffix = uuid.uuid4().hex[:6]
        endpoint_name, function_name = f"dog-breed-{suffix}", f"dog-breed-classify-{suffix}"
        config = deploy_endpoint(server.url, endpoint_name, model_dir, instances)
        if with_lambda:
            deploy_lambda(server.url, function_name, endpoint_name)
    except BaseException:
        server.stop()
        raise
    return ServedModel(server.url, endpoint_name, config, function_name, model_dir, server)


def invoke_lambda(served: ServedModel, event: Any) -> tuple[int, dict[str, Any] | None, str | None]:
    """(HTTP status of the Invoke call, the handler's response, FunctionError) for one event."""
    from botocore.exceptions import ClientError

    payload = event if isinstance(event, bytes) else json.dumps(event).encode()
    try:
        answer = served.client("lambda").invoke(FunctionName=served.function_name, Payload=payload)
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"], None, error.response["Error"]["Code"]
    raw = answer["Payload"].read()
    return answer["StatusCode"], json.loads(raw), answer.get("FunctionError")


def wait_until(predicate: Any, timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(interval)
