"""SageMaker hosting in local_aws, driven with plain boto3 and botocore's own waiters."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import WaiterError
from local_aws_hosting_support import (
    BUCKET,
    FAST_WAIT,
    IMAGE,
    client,
    deploy,
    error_of,
    invoke,
    make_config,
    unique,
    wait_for_status,
)

from local_aws.protocol.server import LocalAwsServer
from local_aws.services import only
from local_aws.services.sagemaker.hosting import instance

HOSTING_ONLY = only("hosting", "sagemaker-runtime")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LocalAwsServer(tmp_path_factory.mktemp("hosting"), service_classes=HOSTING_ONLY) as running:
        yield running


@pytest.fixture(scope="module")
def sm(server):
    return client(server, "sagemaker")


@pytest.fixture(scope="module")
def runtime(server):
    return client(server, "sagemaker-runtime")


@pytest.fixture(scope="module")
def s3(server):
    s3 = client(server, "s3")
    s3.create_bucket(Bucket=BUCKET)
    return s3


def test_endpoint_serves_the_handler_and_describes_itself(sm, runtime, s3, server):
    endpoint, config = deploy(sm, s3, "resnet-v1")
    response = runtime.invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Accept="application/json", Body=b'{"x": 7}'
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    answer = json.loads(response["Body"].read())
    assert (answer["label"], answer["x"]) == ("resnet-v1", 7)

    described = sm.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointConfigName"] == config
    assert described["EndpointArn"].endswith(f":endpoint/{endpoint}")
    assert described["LastModifiedTime"] >= described["CreationTime"]
    [variant] = described["ProductionVariants"]
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"], variant["CurrentWeight"]) == (
        1,
        1,
        1.0,
    )
    assert variant["DeployedImages"][0]["SpecifiedImage"] == IMAGE
    assert [e["EndpointName"] for e in sm.list_endpoints(NameContains=endpoint)["Endpoints"]] == [endpoint]

    logs = client(server, "logs")
    deadline = time.monotonic() + 10
    streams: list = []
    while not streams and time.monotonic() < deadline:
        time.sleep(0.3)
        with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
            streams = logs.describe_log_streams(logGroupName=f"/aws/sagemaker/Endpoints/{endpoint}")[
                "logStreams"
            ]
    assert streams and streams[0]["logStreamName"].startswith("AllTraffic/i-")


def test_two_instances_share_the_traffic(sm, runtime, s3):
    endpoint, _ = deploy(sm, s3, "twins", instances=2)
    pids = {invoke(runtime, endpoint, {})["pid"] for _ in range(6)}
    assert len(pids) == 2


def test_container_errors_become_model_errors(sm, runtime, s3):
    endpoint, _ = deploy(sm, s3, "strict")
    client_error = error_of(lambda: invoke(runtime, endpoint, {"fail": "image is not a JPEG"}))
    assert client_error.response["Error"]["Code"] == "ModelError"
    assert client_error.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert client_error.response["OriginalStatusCode"] == 400
    assert client_error.response["OriginalMessage"] == "image is not a JPEG"
    assert client_error.response["LogStreamArn"].startswith(
        f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/{endpoint}:log-stream:AllTraffic/"
    )
    assert client_error.response["Error"]["Message"].startswith(
        'Received client error (400) from primary with message "image is not a JPEG".'
    )
    server_error = error_of(lambda: invoke(runtime, endpoint, {"crash": "tensor shape mismatch"}))
    assert server_error.response["OriginalStatusCode"] == 500
    assert "Received server error (500)" in server_error.response["Error"]["Message"]
    assert invoke(runtime, endpoint, {"x": 1})["label"] == "strict"  # the worker survived both


def test_slow_container_times_out_as_model_error(sm, runtime, s3, monkeypatch):
    endpoint, _ = deploy(sm, s3, "slow")
    monkeypatch.setattr(instance, "INVOCATION_TIMEOUT_SECONDS", 0.5)
    error = error_of(lambda: invoke(runtime, endpoint, {"sleep": 2}))
    assert error.response["Error"]["Code"] == "ModelError"
    assert "Your invocation timed out while waiting for a response from container primary" in str(error)
    assert "OriginalStatusCode" not in error.response


def test_unknown_endpoint_and_oversize_payload(sm, runtime, s3):
    missing = error_of(lambda: invoke(runtime, "no-such-endpoint", {}))
    assert missing.response["Error"]["Code"] == "ValidationError"
    assert (
        missing.response["Error"]["Message"] == "Endpoint no-such-endpoint of account 123456789012 not found."
    )
    described = error_of(lambda: sm.describe_endpoint(EndpointName="no-such-endpoint"))
    assert described.response["Error"]["Code"] == "ValidationException"
    assert described.response["Error"]["Message"].startswith("Could not find endpoint")

    endpoint, _ = deploy(sm, s3, "small-inputs")
    oversize = error_of(
        lambda: runtime.invoke_endpoint(
            EndpointName=endpoint, ContentType="application/json", Body=b"0" * (6 * 1024 * 1024 + 1)
        )
    )
    assert oversize.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert oversize.response["Error"]["Code"] == "413"


def test_names_duplicates_and_missing_references(sm, s3):
    config = make_config(sm, s3, "dup")
    for call, text in (
        (
            lambda: sm.create_model(ModelName=config, PrimaryContainer={"Image": IMAGE}),
            "Cannot create already existing model",
        ),
        (
            lambda: sm.create_endpoint_config(
                EndpointConfigName=config,
                ProductionVariants=[
                    {
                        "VariantName": "A",
                        "ModelName": config,
                        "InitialInstanceCount": 1,
                        "InstanceType": "ml.m5.large",
                    }
                ],
            ),
            "Cannot create already existing endpoint configuration",
        ),
        (
            lambda: sm.create_endpoint_config(
                EndpointConfigName=unique("c"),
                ProductionVariants=[
                    {
                        "VariantName": "A",
                        "ModelName": "ghost",
                        "InitialInstanceCount": 1,
                        "InstanceType": "ml.m5.large",
                    }
                ],
            ),
            'Could not find model "arn:aws:sagemaker:us-east-1:123456789012:model/ghost".',
        ),
        (
            lambda: sm.create_model(ModelName="bad_name", PrimaryContainer={"Image": IMAGE}),
            "regular expression",
        ),
        (
            lambda: sm.create_model(ModelName="a" * 64, PrimaryContainer={"Image": IMAGE}),
            "less than or equal to 63",
        ),
        (lambda: sm.describe_model(ModelName="ghost"), "Could not find model"),
        (
            lambda: sm.create_endpoint(EndpointName=unique("e"), EndpointConfigName="ghost"),
            "Could not find endpoint configuration",
        ),
    ):
        error = error_of(call)
        assert error.response["Error"]["Code"] == "ValidationException"
        assert text in error.response["Error"]["Message"]
    assert sm.describe_model(ModelName=config)["PrimaryContainer"]["Image"] == IMAGE
    assert (
        sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]["ModelName"] == config
    )
    sm.delete_endpoint_config(EndpointConfigName=config)
    sm.delete_model(ModelName=config)
    assert config not in [m["ModelName"] for m in sm.list_models(NameContains=config)["Models"]]


def test_update_switches_models_without_a_failed_request(sm, runtime, s3):
    endpoint, old_config = deploy(sm, s3, "old")
    new_config = make_config(sm, s3, "new")
    labels: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline and len(labels) + len(failures) < 2000:
            try:
                labels.append(invoke(runtime, endpoint, {})["label"])
            except Exception as error:
                failures.append(repr(error))

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        time.sleep(0.3)
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=new_config)
        assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Updating"
        sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST_WAIT)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(60)
    assert failures == []
    assert labels[0] == "old" and labels[-1] == "new"
    switch = labels.index("new")
    assert set(labels[switch:]) == {"new"}, "traffic went back to the old model after the swap"
    described = sm.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointConfigName"] == new_config
    assert "FailureReason" not in described
    assert old_config != new_config


def test_update_to_a_broken_model_keeps_serving_the_old_one(sm, runtime, s3):
    endpoint, old_config = deploy(sm, s3, "stable")
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=make_config(sm, s3, "broken"))
    assert invoke(runtime, endpoint, {})["label"] == "stable"  # while Updating
    described = wait_for_status(sm, endpoint, "InService")
    assert described["EndpointConfigName"] == old_config
    assert "did not pass the ping health check" in described["FailureReason"]
    assert "cannot load weights" in described["FailureReason"]
    assert invoke(runtime, endpoint, {})["label"] == "stable"

    missing = error_of(lambda: sm.update_endpoint(EndpointName=endpoint, EndpointConfigName="ghost"))
    assert missing.response["Error"]["Message"].startswith("Could not find endpoint configuration")


def test_failed_create_reports_the_reason(sm, s3):
    config = make_config(sm, s3, "broken")
    endpoint = unique("ep")
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    with pytest.raises(WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST_WAIT)
    described = sm.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "Failed"
    assert "cannot load weights" in described["FailureReason"]
    update = error_of(lambda: sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config))
    assert "DeleteEndpoint is the only operation" in update.response["Error"]["Message"]
    sm.delete_endpoint(EndpointName=endpoint)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig=FAST_WAIT)


def test_create_on_existing_endpoint_says_what_the_provider_matches(sm, s3):
    endpoint, config = deploy(sm, s3, "first")
    error = error_of(lambda: sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=config))
    assert error.response["Error"]["Message"].startswith("Cannot create already existing endpoint")


def test_weights_and_capacities_change_the_number_of_processes(sm, runtime, s3):
    endpoint, _ = deploy(sm, s3, "elastic")
    sm.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
    )
    described = wait_for_status(sm, endpoint, "InService")
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert len({invoke(runtime, endpoint, {})["pid"] for _ in range(6)}) == 2
    sm.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}],
    )
    described = wait_for_status(sm, endpoint, "InService")
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    assert len({invoke(runtime, endpoint, {})["pid"] for _ in range(4)}) == 1
    unknown = error_of(
        lambda: sm.update_endpoint_weights_and_capacities(
            EndpointName=endpoint,
            DesiredWeightsAndCapacities=[{"VariantName": "Nope", "DesiredInstanceCount": 1}],
        )
    )
    assert unknown.response["Error"]["Code"] == "ValidationException"


def test_crashed_instance_is_routed_around_and_restarted(sm, runtime, s3):
    endpoint, _ = deploy(sm, s3, "phoenix", instances=2)
    pids = {invoke(runtime, endpoint, {})["pid"] for _ in range(4)}
    victim = pids.pop()
    os.killpg(victim, 9)
    answers = [invoke(runtime, endpoint, {})["pid"] for _ in range(6)]  # none fails
    assert victim not in answers
    deadline = time.monotonic() + 20
    while len({invoke(runtime, endpoint, {})["pid"] for _ in range(4)} - {victim}) < 2:
        assert time.monotonic() < deadline, "the crashed instance was not restarted"
        time.sleep(0.3)


def test_delete_stops_the_model_servers(sm, runtime, s3):
    endpoint, _ = deploy(sm, s3, "short-lived")
    pid = invoke(runtime, endpoint, {})["pid"]
    sm.delete_endpoint(EndpointName=endpoint)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig=FAST_WAIT)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
        assert time.monotonic() < deadline, "model server still running after DeleteEndpoint"
        time.sleep(0.1)
    missing = error_of(lambda: invoke(runtime, endpoint, {}))
    assert missing.response["Error"]["Code"] == "ValidationError"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def test_provider_endpoint_operator_creates_then_updates_in_place(sm, runtime, s3, server, monkeypatch):
    """The DAG's path: operation="create" twice; the second run falls back to UpdateEndpoint."""
    from airflow.providers.amazon.aws.operators.sagemaker import SageMakerEndpointOperator

    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_LOCAL",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "x",
                "password": "x",
                "extra": {"endpoint_url": server.url, "region_name": "us-east-1"},
            }
        ),
    )
    endpoint = unique("ep")
    for label in ("first-run", "retrained"):
        config = make_config(sm, s3, label)
        result = SageMakerEndpointOperator(
            task_id=f"deploy-{label}",
            config={"EndpointName": endpoint, "EndpointConfigName": config},
            aws_conn_id="aws_local",
            operation="create",
            check_interval=1,
        ).execute(context={})
        assert result["Endpoint"]["EndpointStatus"] == "InService"
        assert result["Endpoint"]["EndpointConfigName"] == config
        assert invoke(runtime, endpoint, {})["label"] == label


def test_shutdown_leaves_no_model_server_behind(tmp_path):
    with LocalAwsServer(tmp_path, service_classes=HOSTING_ONLY) as local:
        sm, s3, runtime = (client(local, name) for name in ("sagemaker", "s3", "sagemaker-runtime"))
        s3.create_bucket(Bucket=BUCKET)
        endpoint, _ = deploy(sm, s3, "ephemeral", instances=2)
        pids = {invoke(runtime, endpoint, {})["pid"] for _ in range(4)}
    assert len(pids) == 2
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid)
