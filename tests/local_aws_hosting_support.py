"""Shared by the local_aws hosting, CloudWatch, autoscaling and rollout tests: a torch-free model
whose handler answers with the label it was packaged with, and the calls that deploy and invoke it.

Labels steer the handler: ``broken`` fails to load (model_fn raises), ``serves-500`` loads but
answers every request with a 500; a request ``{"fail": msg}`` gets a 400, ``{"crash": msg}`` a
500, ``{"sleep": s}`` waits ``s`` seconds first. The tests of what runs on local_aws's clock
(metrics, alarms, autoscaling, rollouts) use ``SCALE`` and wait for alarms with ``wait_for_state``.
"""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from served_model import register_model_and_config

from local_aws.protocol.server import LocalAwsServer

BUCKET = "models"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5-cpu-py311"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
FAST_WAIT = {"Delay": 0.2, "MaxAttempts": 150}
SCALE = 60.0  # the time scale of the metric, alarm, autoscaling and rollout tests
MINUTE = 60 / SCALE  # a simulated minute lasts one real second

HANDLER = textwrap.dedent(
    """
    import json
    import os
    import time

    class RequestError(Exception):  # shaped like sagemaker_inference's GenericInferenceToolkitError
        def __init__(self, status_code, message):
            super().__init__(status_code, message)
            self.status_code = status_code
            self.message = message

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "label.txt")) as f:
            label = f.read().strip()
        if label == "broken":
            raise RuntimeError("cannot load weights: label says broken")
        return label

    def input_fn(body, content_type):
        data = json.loads(body)
        if "fail" in data:
            raise RequestError(400, data["fail"])
        if "crash" in data:
            raise ValueError(data["crash"])
        time.sleep(data.get("sleep", 0))
        return data

    def predict_fn(data, model):
        if model == "serves-500":
            raise RuntimeError("this model's serving is broken")
        return {"label": model, "pid": os.getpid(), "x": data.get("x")}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)


def model_archive(label: str, handler: str = HANDLER) -> bytes:
    """model.tar.gz with ``label.txt`` and ``handler`` as code/inference.py."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (("label.txt", label), ("code/inference.py", handler)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def client(server: LocalAwsServer, service: str):
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, read_timeout=90),
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_config(sm, s3, label: str, instances: int = 1) -> str:
    """A model whose handler answers with ``label``, and an endpoint config serving it."""
    name = unique("m")
    s3.put_object(Bucket=BUCKET, Key=f"{name}/model.tar.gz", Body=model_archive(label))
    register_model_and_config(sm, name, f"s3://{BUCKET}/{name}/model.tar.gz", instances, ROLE)
    return name


def deploy(sm, s3, label: str, instances: int = 1) -> tuple[str, str]:
    config = make_config(sm, s3, label, instances)
    endpoint = unique("ep")
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST_WAIT)
    return endpoint, config


def invoke(runtime, endpoint: str, payload: dict) -> dict:
    response = runtime.invoke_endpoint(
        EndpointName=endpoint,
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps(payload),
    )
    return json.loads(response["Body"].read())


def error_of(call) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


def wait_for_status(sm, endpoint: str, wanted: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        described = sm.describe_endpoint(EndpointName=endpoint)
        if described["EndpointStatus"] == wanted:
            return described
        assert time.monotonic() < deadline, f"{endpoint} stayed {described['EndpointStatus']}"
        time.sleep(0.2)


def alarm(cloudwatch, name: str) -> dict:
    return cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]


def wait_for_state(cloudwatch, name: str, state: str, minutes: float = 30) -> dict:
    """The alarm once it is in ``state``; fails after ``minutes`` simulated minutes (a bound only)."""
    deadline = time.monotonic() + minutes * MINUTE
    while (found := alarm(cloudwatch, name))["StateValue"] != state:
        assert time.monotonic() < deadline, f"{name} stayed {found['StateValue']}: {found['StateReason']}"
        time.sleep(MINUTE / 10)
    return found
