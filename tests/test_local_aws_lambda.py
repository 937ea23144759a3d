"""local_aws Lambda, driven with plain boto3 and botocore's waiters as the specification."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import textwrap
import time
import uuid
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local_aws.protocol.server import LocalAwsServer

LAMBDA_ONLY = {"lambda": "local_aws.services.awslambda.service:LambdaService"}
TRUST_LAMBDA = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
FAST_WAIT = {"Delay": 0.2, "MaxAttempts": 100}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAwsServer]:
    with LocalAwsServer(tmp_path_factory.mktemp("local_aws"), service_classes=LAMBDA_ONLY) as running:
        yield running


def client(server: LocalAwsServer, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=60),
    )


@pytest.fixture(scope="module")
def lam(server: LocalAwsServer) -> Any:
    return client(server, "lambda")


@pytest.fixture(scope="module")
def role_arn(server: LocalAwsServer) -> str:
    iam = client(server, "iam")
    return iam.create_role(
        RoleName=unique("lambda-test-role"), AssumeRolePolicyDocument=json.dumps(TRUST_LAMBDA)
    )["Role"]["Arn"]


def package(source: str, module: str = "app") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{module}.py", textwrap.dedent(source))
    return buffer.getvalue()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(lam: Any, role_arn: str, source: str, wait: bool = True, **extra: Any) -> str:
    name = extra.pop("FunctionName", None) or unique("fn")
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role_arn,
        Handler=extra.pop("Handler", "app.handler"),
        Code={"ZipFile": package(source)},
        **extra,
    )
    if wait:
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=FAST_WAIT)
    return name


def invoke(lam: Any, name: str, event: Any = None, **extra: Any) -> tuple[dict[str, Any], Any]:
    answer = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **extra)
    return answer, json.loads(answer["Payload"].read())


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return error.value.response["Error"]["Code"]


ECHO = """
    import os
    def handler(event, context):
        print("handling", event)
        return {"event": event, "pid": os.getpid(), "version": context.function_version}
"""

SLEEP_THEN_PID = """
    import os, time
    def handler(event, context):
        time.sleep(event.get("sleep", 0))
        return os.getpid()
"""


def test_create_wait_active_then_invoke_runs_the_handler(lam: Any, role_arn: str) -> None:
    zipped = package(ECHO)
    name = unique("echo")
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role_arn,
        Handler="app.handler",
        Code={"ZipFile": zipped},
    )
    assert created["State"] in ("Pending", "Active")
    assert created["CodeSha256"] == base64.b64encode(hashlib.sha256(zipped).digest()).decode()
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=FAST_WAIT)

    answer, result = invoke(lam, name, {"hello": "world"}, LogType="Tail")

    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "$LATEST"
    assert result["event"] == {"hello": "world"} and result["version"] == "$LATEST"
    tail = base64.b64decode(answer["LogResult"]).decode()
    assert "handling {'hello': 'world'}" in tail
    assert "START RequestId:" in tail and "REPORT RequestId:" in tail and "Init Duration:" in tail


def test_role_must_exist_and_trust_lambda(server: LocalAwsServer, lam: Any, role_arn: str) -> None:
    missing = role_arn.replace("lambda-test-role", "no-such-role")
    with pytest.raises(ClientError) as error:
        create(lam, missing, ECHO, wait=False)
    assert error_code(error) == "InvalidParameterValueException"
    assert (
        error.value.response["Error"]["Message"]
        == "The role defined for the function cannot be assumed by Lambda."
    )

    ec2_trust = json.loads(json.dumps(TRUST_LAMBDA).replace("lambda.amazonaws.com", "ec2.amazonaws.com"))
    ec2_role = client(server, "iam").create_role(
        RoleName=unique("ec2"), AssumeRolePolicyDocument=json.dumps(ec2_trust)
    )
    with pytest.raises(ClientError) as error:
        create(lam, ec2_role["Role"]["Arn"], ECHO, wait=False)
    assert error_code(error) == "InvalidParameterValueException"


def test_update_code_then_waiter_then_new_behaviour(lam: Any, role_arn: str) -> None:
    name = create(lam, role_arn, "def handler(event, context):\n    return 'old'\n")
    assert invoke(lam, name)[1] == "old"

    updated = lam.update_function_code(
        FunctionName=name, ZipFile=package("def handler(e, c):\n    return 'new'\n")
    )
    assert updated["LastUpdateStatus"] in ("InProgress", "Successful")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=FAST_WAIT)

    assert invoke(lam, name)[1] == "new"
    configuration = lam.get_function(FunctionName=name)["Configuration"]
    assert configuration["LastUpdateStatus"] == "Successful" and configuration["State"] == "Active"


def test_update_configuration_changes_environment(lam: Any, role_arn: str) -> None:
    source = "import os\ndef handler(event, context):\n    return os.environ.get('COLOUR')\n"
    name = create(lam, role_arn, source, Environment={"Variables": {"COLOUR": "red"}})
    assert invoke(lam, name)[1] == "red"

    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"COLOUR": "blue"}})
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=FAST_WAIT)

    assert invoke(lam, name)[1] == "blue"


def wait_provisioned_ready(lam: Any, name: str, alias: str) -> dict[str, Any]:
    for _ in range(300):
        status = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=alias)
        if status["Status"] != "IN_PROGRESS":
            return status
        time.sleep(0.1)
    raise AssertionError("provisioned concurrency never left IN_PROGRESS")


def test_provisioned_concurrency_keeps_warm_workers_for_the_alias(
    server: LocalAwsServer, lam: Any, role_arn: str
) -> None:
    name = create(lam, role_arn, SLEEP_THEN_PID)
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=version, WaiterConfig=FAST_WAIT
    )
    assert lam.publish_version(FunctionName=name)["Version"] == version  # nothing changed: same version
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=version)

    put = lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=2
    )
    assert put["Status"] == "IN_PROGRESS" and put["RequestedProvisionedConcurrentExecutions"] == 2
    status = wait_provisioned_ready(lam, name, "live")

    assert status["Status"] == "READY"
    assert status["AllocatedProvisionedConcurrentExecutions"] == 2
    warm = set(server.app.context.services["lambda"].worker_pids(name, version))
    assert len(warm) == 2
    with ThreadPoolExecutor(2) as pool:
        concurrent = list(pool.map(lambda _: invoke(lam, f"{name}:live", {"sleep": 0.5})[1], range(2)))
    assert set(concurrent) == warm  # both requests ran in the provisioned workers, no cold start
    sequential = {invoke(lam, name, Qualifier="live")[1] for _ in range(4)}
    assert sequential <= warm  # warm reuse: the same processes answer again
    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed] == ["live"]


def test_alias_update_moves_traffic_to_the_new_version(lam: Any, role_arn: str) -> None:
    name = create(lam, role_arn, "def handler(e, c):\n    return 'one'\n")
    first = lam.publish_version(FunctionName=name)["Version"]
    lam.update_function_code(FunctionName=name, ZipFile=package("def handler(e, c):\n    return 'two'\n"))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=FAST_WAIT)
    second = lam.publish_version(FunctionName=name)["Version"]
    lam.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=second, WaiterConfig=FAST_WAIT
    )
    lam.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=first, WaiterConfig=FAST_WAIT
    )
    assert (first, second) == ("1", "2")
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=first)

    answer, result = invoke(lam, name, Qualifier="live")
    assert (result, answer["ExecutedVersion"]) == ("one", "1")

    lam.update_alias(FunctionName=name, Name="live", FunctionVersion=second)
    answer, result = invoke(lam, name, Qualifier="live")
    assert (result, answer["ExecutedVersion"]) == ("two", "2")
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "2"
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    assert versions == ["$LATEST", "1", "2"]


def test_handler_exception_is_an_unhandled_function_error(lam: Any, role_arn: str) -> None:
    name = create(lam, role_arn, "def handler(event, context):\n    raise ValueError('bad dog')\n")

    answer, error = invoke(lam, name)

    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "bad dog"
    assert any("raise ValueError" in frame for frame in error["stackTrace"])


def test_timeout_kills_the_worker_and_answers_task_timed_out(
    server: LocalAwsServer, lam: Any, role_arn: str
) -> None:
    name = create(lam, role_arn, SLEEP_THEN_PID, Timeout=1)
    stuck_pid = invoke(lam, name)[1]

    started = time.monotonic()
    answer, error = invoke(lam, name, {"sleep": 30})

    assert time.monotonic() - started < 10
    assert answer["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in error["errorMessage"]
    assert stuck_pid not in server.app.context.services["lambda"].worker_pids(name, "$LATEST")
    assert invoke(lam, name)[1] != stuck_pid  # replaced by a fresh worker


def test_crashed_worker_is_replaced(lam: Any, role_arn: str) -> None:
    source = """
    import os
    def handler(event, context):
        if event.get("crash"):
            os._exit(3)
        return "ok"
    """
    name = create(lam, role_arn, source)

    answer, error = invoke(lam, name, {"crash": True})
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in error["errorMessage"]
    assert invoke(lam, name)[1] == "ok"


def test_payload_limits(lam: Any, role_arn: str) -> None:
    name = create(lam, role_arn, "def handler(event, context):\n    return 'x' * event['size']\n")

    with pytest.raises(ClientError) as error:
        lam.invoke(
            FunctionName=name, Payload=json.dumps({"size": 1, "pad": "y" * (6 * 1024 * 1024)}).encode()
        )
    assert error_code(error) == "RequestTooLargeException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413

    answer, error_document = invoke(lam, name, {"size": 7 * 1024 * 1024})
    assert answer["FunctionError"] == "Unhandled"
    assert error_document["errorType"] == "Function.ResponseSizeTooLarge"
    assert invoke(lam, name, {"size": 10})[1] == "x" * 10


def test_environment_and_context_visible_in_the_handler(lam: Any, role_arn: str) -> None:
    source = """
    import os
    def handler(event, context):
        keys = ["ENDPOINT_NAME", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "LAMBDA_TASK_ROOT"]
        return {
            "env": {key: os.environ.get(key) for key in keys},
            "cwd": os.getcwd(),
            "context": [context.function_name, context.function_version, context.invoked_function_arn,
                        str(context.memory_limit_in_mb), context.log_group_name, bool(context.aws_request_id),
                        0 < context.get_remaining_time_in_millis() <= 7000],
        }
    """
    name = create(
        lam, role_arn, source, Environment={"Variables": {"ENDPOINT_NAME": "dogs"}}, MemorySize=256, Timeout=7
    )

    result = invoke(lam, name)[1]

    env = result["env"]
    assert env["ENDPOINT_NAME"] == "dogs"
    assert (env["AWS_LAMBDA_FUNCTION_NAME"], env["AWS_LAMBDA_FUNCTION_VERSION"]) == (name, "$LATEST")
    assert (env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], env["AWS_REGION"]) == ("256", "us-east-1")
    assert os.path.samefile(env["LAMBDA_TASK_ROOT"], result["cwd"])
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    assert result["context"] == [name, "$LATEST", arn, "256", f"/aws/lambda/{name}", True, True]


def test_reserved_environment_keys_are_rejected(lam: Any, role_arn: str) -> None:
    with pytest.raises(ClientError) as error:
        create(lam, role_arn, ECHO, wait=False, Environment={"Variables": {"AWS_REGION": "eu-west-1"}})
    assert error_code(error) == "InvalidParameterValueException"
    assert "AWS_REGION" in error.value.response["Error"]["Message"]


def test_handler_boto3_calls_come_back_to_local_aws(server: LocalAwsServer, lam: Any, role_arn: str) -> None:
    bucket = unique("lambda-sees")
    client(server, "s3").create_bucket(Bucket=bucket)
    source = """
    import boto3
    def handler(event, context):
        return [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    """
    name = create(lam, role_arn, source, Timeout=30)

    answer, buckets = invoke(lam, name)

    assert "FunctionError" not in answer, buckets
    assert bucket in buckets


def test_logs_reach_cloudwatch(server: LocalAwsServer, lam: Any, role_arn: str) -> None:
    marker = unique("marker")
    name = create(lam, role_arn, f"def handler(event, context):\n    print('{marker}')\n")
    invoke(lam, name)
    logs = client(server, "logs")

    for _ in range(100):
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            events = []
        if any(marker in e["message"] for e in events):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"{marker} never reached /aws/lambda/{name}")
    assert any(e["message"].startswith("REPORT RequestId:") for e in events)


def test_unknown_function_and_qualifier_are_not_found(lam: Any, role_arn: str) -> None:
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="no-such-function")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        invoke(lam, "no-such-function")
    name = create(lam, role_arn, ECHO)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_configuration(FunctionName=name, Qualifier="7")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName=name, Name="nope")


def test_function_name_as_arn_partial_arn_and_qualified_name(lam: Any, role_arn: str) -> None:
    name = create(lam, role_arn, ECHO)
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]

    assert invoke(lam, arn)[1]["version"] == "$LATEST"
    assert (
        lam.get_function(FunctionName=f"123456789012:function:{name}")["Configuration"]["FunctionName"]
        == name
    )
    assert invoke(lam, f"{name}:$LATEST")[0]["ExecutedVersion"] == "$LATEST"
    with pytest.raises(ClientError) as error:
        lam.invoke(FunctionName=f"{name}:1", Qualifier="2")
    assert error_code(error) == "InvalidParameterValueException"


def test_rerun_of_create_is_a_conflict(lam: Any, role_arn: str) -> None:
    name = create(lam, role_arn, ECHO)
    with pytest.raises(lam.exceptions.ResourceConflictException):
        create(lam, role_arn, ECHO, wait=False, FunctionName=name)


def test_provisioned_concurrency_needs_a_published_version(lam: Any, role_arn: str) -> None:
    name = create(lam, role_arn, ECHO)
    with pytest.raises(ClientError) as error:
        lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1
        )
    assert error_code(error) == "InvalidParameterValueException"
    with pytest.raises(ClientError) as error:
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert error_code(error) == "ProvisionedConcurrencyConfigNotFoundException"


def test_import_error_is_reported_as_the_runtime_does(lam: Any, role_arn: str) -> None:
    name = create(lam, role_arn, ECHO, Handler="missing_module.handler")

    answer, error = invoke(lam, name)

    assert answer["FunctionError"] == "Unhandled"
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "missing_module" in error["errorMessage"]


def test_bad_payload_and_invocation_types(lam: Any, role_arn: str) -> None:
    name = create(lam, role_arn, ECHO)
    with pytest.raises(ClientError) as error:
        lam.invoke(FunctionName=name, Payload=b"{not json")
    assert error_code(error) == "InvalidRequestContentException"
    assert lam.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202


def test_reserved_concurrency_throttles(lam: Any, role_arn: str) -> None:
    name = create(
        lam, role_arn, "import time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n"
    )
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(invoke, lam, name, {"sleep": 2})
        time.sleep(1.0)  # the first invocation holds the only slot (cold start included)
        with pytest.raises(lam.exceptions.TooManyRequestsException):
            invoke(lam, name)
        assert "FunctionError" not in busy.result()[0]


def test_shutdown_kills_every_worker(tmp_path: Any) -> None:
    with LocalAwsServer(tmp_path, service_classes=LAMBDA_ONLY) as own:
        own_lam = client(own, "lambda")
        iam = client(own, "iam")
        role = iam.create_role(RoleName=unique("role"), AssumeRolePolicyDocument=json.dumps(TRUST_LAMBDA))[
            "Role"
        ]["Arn"]
        name = create(own_lam, role, ECHO)
        pid = invoke(own_lam, name)[1]["pid"]
        os.kill(pid, 0)  # alive and warm
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"worker {pid} outlived the server")


def test_moving_a_provisioned_alias_provisions_the_new_version(
    server: LocalAwsServer, lam: Any, role_arn: str
) -> None:
    name = create(lam, role_arn, SLEEP_THEN_PID)
    first = lam.publish_version(FunctionName=name)["Version"]
    lam.update_function_configuration(FunctionName=name, Timeout=5)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=FAST_WAIT)
    second = lam.publish_version(FunctionName=name, Description="the second")["Version"]
    lam.get_waiter("published_version_active").wait(
        FunctionName=name, Qualifier=second, WaiterConfig=FAST_WAIT
    )
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=first)
    lam.put_provisioned_concurrency_config(
        FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1
    )
    assert wait_provisioned_ready(lam, name, "live")["Status"] == "READY"

    lam.update_alias(FunctionName=name, Name="live", FunctionVersion=second)
    status = wait_provisioned_ready(lam, name, "live")

    assert status["Status"] == "READY" and status["AllocatedProvisionedConcurrentExecutions"] == 1
    warm = server.app.context.services["lambda"].worker_pids(name, second)
    assert len(warm) == 1
    assert invoke(lam, name, Qualifier="live")[1] == warm[0]
    assert lam.publish_version(FunctionName=name)["Version"] == second  # unchanged since: no new version


def test_idle_workers_are_reaped_but_provisioned_ones_stay(tmp_path: Any) -> None:
    with LocalAwsServer(tmp_path, service_classes=LAMBDA_ONLY) as own:
        service = own.app.context.services["lambda"]
        service.idle_worker_seconds = 0.5
        own_lam = client(own, "lambda")
        role = client(own, "iam").create_role(
            RoleName=unique("role"), AssumeRolePolicyDocument=json.dumps(TRUST_LAMBDA)
        )
        name = create(own_lam, role["Role"]["Arn"], SLEEP_THEN_PID)
        version = own_lam.publish_version(FunctionName=name)["Version"]
        own_lam.get_waiter("published_version_active").wait(
            FunctionName=name, Qualifier=version, WaiterConfig=FAST_WAIT
        )
        own_lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=1
        )
        assert wait_provisioned_ready(own_lam, name, version)["Status"] == "READY"
        on_demand = invoke(own_lam, name)[1]
        provisioned = service.worker_pids(name, version)

        for _ in range(100):
            if not service.worker_pids(name, "$LATEST"):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"idle worker {on_demand} was never reaped")
        assert service.worker_pids(name, version) == provisioned
