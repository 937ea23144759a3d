"""Section 4: a prediction through local_aws's Lambda and endpoint against a direct handler call.

The Lambda path is what the DAG's smoke test and real clients use: boto3
``lambda.invoke`` -> local_aws Lambda worker running ``lambda_function.py`` ->
``sagemaker-runtime.invoke_endpoint`` -> the model server running
``inference.py`` (int8 ONNX) on the sample model. The baseline calls the same
``input_fn -> predict_fn -> output_fn`` in this process with the same model
directory, so the difference is the serving stack's overhead per request.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import tarfile
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.artifacts import MODEL_SCRIPTS, sample_artifacts
from bench.config import BenchConfig
from bench.report import Comparison, SectionResult
from bench.stats import interleaved, summarize

LAMBDA_SOURCE = MODEL_SCRIPTS / "lambda_function.py"
LAMBDA_HANDLER = "lambda_function.lambda_handler"
IMAGE_URI = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5-cpu-py311"
BUCKET = "bench-models"
TRUST_LAMBDA = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
WAIT = {"Delay": 1, "MaxAttempts": 300}


def _missing_prerequisite() -> str | None:
    if not LAMBDA_SOURCE.is_file():
        return f"{LAMBDA_SOURCE.name} does not exist yet"
    try:
        from local_aws.protocol import server  # noqa: F401
    except ImportError as error:
        return f"local_aws.protocol.server does not import: {error}"
    from local_aws.services import SERVICES as SERVICE_CLASSES

    for service in ("hosting", "lambda"):
        module = SERVICE_CLASSES.get(service, "").split(":")[0]
        if not module or not (MODEL_SCRIPTS.parent / (module.replace(".", "/") + ".py")).is_file():
            return f"local_aws has no {service} service yet"
    return None


def _model_archive(model_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(model_dir.rglob("*")):
            if path.is_file() and path.name != "bench_stamp.json":
                archive.add(path, arcname=str(path.relative_to(model_dir)))
    return buffer.getvalue()


def _lambda_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(LAMBDA_SOURCE, LAMBDA_SOURCE.name)
    return buffer.getvalue()


def _client(service: str, url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=120),
    )


def _deploy(url: str, model_dir: Path) -> str:
    """Endpoint serving the sample model and a Lambda pointing at it; returns the function name."""
    suffix = uuid.uuid4().hex[:8]
    s3, sagemaker, iam, lam = (_client(name, url) for name in ("s3", "sagemaker", "iam", "lambda"))
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"{suffix}/model.tar.gz", Body=_model_archive(model_dir))
    name = f"bench-{suffix}"
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sagemaker",
        PrimaryContainer={
            "Image": IMAGE_URI,
            "ModelDataUrl": f"s3://{BUCKET}/{suffix}/model.tar.gz",
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
        },
    )
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": 1.0,
    }
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST_LAMBDA))["Role"]["Arn"]
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler=LAMBDA_HANDLER,
        Code={"ZipFile": _lambda_zip()},
        Timeout=60,
        Environment={"Variables": {"ENDPOINT_NAME": name}},
    )
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=WAIT)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return name


def run(config: BenchConfig, log: Callable[[str], None] = print) -> SectionResult:
    result = SectionResult("local_aws: prediction through the Lambda vs a direct handler call")
    missing = _missing_prerequisite()
    if missing:
        result.skipped = missing
        return result
    import inference

    from local_aws.protocol.server import LocalAwsServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per hop otherwise
    artifacts = sample_artifacts(config, "agreement", log)
    images = [path.read_bytes() for path in artifacts.evaluation_images()[: config.lambda_invocations]]
    model = inference.model_fn(str(artifacts.model_dir))

    def direct(body: bytes) -> str:
        return inference.output_fn(inference.predict_fn(inference.input_fn(body, "image/jpeg"), model), "*/*")

    with (
        tempfile.TemporaryDirectory(prefix="bench-local-aws-") as state_dir,
        LocalAwsServer(state_dir) as server,
    ):
        began = time.perf_counter()
        function_name = _deploy(server.url, artifacts.model_dir)
        deploy_seconds = time.perf_counter() - began
        lam = _client("lambda", server.url)

        def through_lambda(body: bytes) -> str:
            event = {"image": base64.b64encode(body).decode(), "content_type": "image/jpeg", "top_k": 5}
            answer = lam.invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
            payload = answer["Payload"].read().decode()
            if answer.get("FunctionError"):
                raise RuntimeError(f"the Lambda failed: {payload[:500]}")
            return payload

        through_lambda(images[0])  # cold start: worker import, endpoint's first request
        runs = interleaved({"direct": direct, "lambda": through_lambda}, images, max(1, len(images) // 3))
    lambda_stats, direct_stats = summarize(runs["lambda"].seconds), summarize(runs["direct"].seconds)
    labels = {"ours_label": "lambda", "baseline_label": "direct"}
    result.comparisons += [
        Comparison(
            "invoke p50 (JPEG -> top-5 JSON)",
            "ms",
            lambda_stats.p50_ms,
            direct_stats.p50_ms,
            "lower",
            **labels,
        ),
        Comparison("invoke p90", "ms", lambda_stats.p90_ms, direct_stats.p90_ms, "lower", **labels),
    ]
    overhead = lambda_stats.p50_ms - direct_stats.p50_ms
    result.notes.append(
        f"serving-stack overhead {overhead:.1f} ms per request at p50 (Lambda worker, two HTTP hops, "
        f"base64 JSON, model server); deploy took {deploy_seconds:.0f} s"
    )
    result.details = {
        "lambda": lambda_stats.as_dict(),
        "direct": direct_stats.as_dict(),
        "overhead_p50_ms": overhead,
    }
    return result
