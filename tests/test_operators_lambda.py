"""LambdaDeployFunctionOperator against moto (IAM, Lambda). moto lacks provisioned
concurrency, so those calls are answered by botocore before-call handlers on the operator's
own Lambda client that keep state (which lets the rerun test still see duplicates if there
were any) and report IN_PROGRESS for as many reads as a test asks before READY."""

from __future__ import annotations

import json
from types import SimpleNamespace

import airflow_fixtures
import boto3
import pytest
from moto import mock_aws

from dog_breed.operators.lambda_deploy import (
    INLINE_POLICY_NAME,
    LambdaDeployFunctionOperator,
    build_zip,
    code_sha256,
)

REGION = airflow_fixtures.REGION


class FakeProvisionedConcurrency:
    """Put/Get/DeleteProvisionedConcurrencyConfig as Lambda answers them: ``pending`` reads
    IN_PROGRESS after a put, then ``final`` (READY unless a test says otherwise)."""

    def __init__(self) -> None:
        self.configs: dict[tuple[str, str], int] = {}
        self.puts = 0
        self.pending = 0
        self.final = "READY"
        self.reads = 0

    def install(self, client) -> None:
        events = client.meta.events
        for operation, answer in [
            ("PutProvisionedConcurrencyConfig", self.put),
            ("GetProvisionedConcurrencyConfig", self.get),
            ("DeleteProvisionedConcurrencyConfig", self.delete),
        ]:
            # before-call sees the serialized request; keep the API arguments for it.
            events.register(f"before-parameter-build.lambda.{operation}", self._remember)
            events.register(f"before-call.lambda.{operation}", self._answer(answer))

    @staticmethod
    def _remember(params, context, **_):
        context["api_params"] = dict(params)

    @staticmethod
    def _answer(answer):
        return lambda context, **_: answer(context["api_params"])

    def put(self, params):
        self.puts += 1
        self.configs[(params["FunctionName"], params["Qualifier"])] = params[
            "ProvisionedConcurrentExecutions"
        ]
        return self.get(params)

    def get(self, params):
        key = (params["FunctionName"], params["Qualifier"])
        if key not in self.configs:
            from botocore.exceptions import ClientError

            raise ClientError(
                {"Error": {"Code": "ProvisionedConcurrencyConfigNotFoundException", "Message": "none"}},
                "GetProvisionedConcurrencyConfig",
            )
        self.reads += 1
        n = self.configs[key]
        status = "IN_PROGRESS" if self.pending > 0 else self.final
        self.pending -= 1
        body = {
            "RequestedProvisionedConcurrentExecutions": n,
            "AllocatedProvisionedConcurrentExecutions": n if status == "READY" else 0,
            "Status": status,
        }
        if status == "FAILED":
            body["StatusReason"] = "Insufficient concurrency in the account"
        return SimpleNamespace(status_code=200), body

    def delete(self, params):
        self.configs.pop((params["FunctionName"], params["Qualifier"]), None)
        return SimpleNamespace(status_code=204), {}


@pytest.fixture
def aws(tmp_path):
    with mock_aws():
        clients = {name: boto3.client(name, region_name=REGION) for name in ("iam", "lambda")}
        fake = FakeProvisionedConcurrency()
        source = tmp_path / "lambda_function.py"
        source.write_text("def lambda_handler(event, context):\n    return {'statusCode': 200}\n")
        yield clients, fake, source


def make_operator(aws, **overrides) -> LambdaDeployFunctionOperator:
    """The operator on moto, with the fake provisioned concurrency on its own Lambda client."""
    _, fake, source = aws
    args = {
        "task_id": "deploy_lambda",
        "function_name": "dog-breed-classifier",
        "endpoint_name": "dog-breed-classifier",
        "source_file": str(source),
        "region_name": REGION,
        "waiter_delay": 0.01,
        "role_propagation_delay": 0.01,
        "deferrable": False,
    }
    operator = LambdaDeployFunctionOperator(**{**args, **overrides})
    fake.install(operator.hook.conn)
    return operator


def test_deploys_role_function_version_alias_and_concurrency(aws):
    clients, fake, _ = aws
    result = make_operator(aws, memory_size=1024, timeout=30).execute({})
    lam, iam = clients["lambda"], clients["iam"]
    config = lam.get_function_configuration(FunctionName="dog-breed-classifier")
    assert config["Environment"]["Variables"] == {"ENDPOINT_NAME": "dog-breed-classifier"}
    assert (config["MemorySize"], config["Timeout"], config["Handler"]) == (
        1024,
        30,
        "lambda_function.lambda_handler",
    )
    assert config["Role"] == result["RoleArn"]
    alias = lam.get_alias(FunctionName="dog-breed-classifier", Name="live")
    assert alias["FunctionVersion"] == result["Version"] != "$LATEST"
    assert fake.configs == {("dog-breed-classifier", "live"): 2} and result["ProvisionedConcurrency"] == 2
    role_name = result["RoleArn"].split("/")[-1]
    assert iam.list_role_policies(RoleName=role_name)["PolicyNames"] == [INLINE_POLICY_NAME]
    policy = iam.get_role_policy(RoleName=role_name, PolicyName=INLINE_POLICY_NAME)["PolicyDocument"]
    policy = json.loads(policy) if isinstance(policy, str) else policy
    invoke = [s for s in policy["Statement"] if s["Action"] == "sagemaker:InvokeEndpoint"]
    assert invoke[0]["Resource"] == "arn:aws:sagemaker:us-east-1:123456789012:endpoint/dog-breed-classifier"


def test_rerun_changes_nothing(aws):
    clients, fake, _ = aws
    first = make_operator(aws).execute({})
    second = make_operator(aws).execute({})
    lam, iam = clients["lambda"], clients["iam"]
    assert second["RoleArn"] == first["RoleArn"] and second["CodeSha256"] == first["CodeSha256"]
    assert second["AliasArn"] == first["AliasArn"]
    assert len(iam.list_roles()["Roles"]) == 1
    assert len(lam.list_functions()["Functions"]) == 1
    assert [a["Name"] for a in lam.list_aliases(FunctionName="dog-breed-classifier")["Aliases"]] == ["live"]
    assert fake.puts == 1  # the second run found READY at the requested level


def test_new_code_publishes_a_new_version_and_moves_the_alias(aws):
    clients, fake, source = aws
    first = make_operator(aws).execute({})
    source.write_text("def lambda_handler(event, context):\n    return {'statusCode': 201}\n")
    second = make_operator(aws, provisioned_concurrency=0).execute({})
    assert second["CodeSha256"] != first["CodeSha256"]
    alias = clients["lambda"].get_alias(FunctionName="dog-breed-classifier", Name="live")
    assert alias["FunctionVersion"] == second["Version"]
    assert fake.configs == {} and second["ProvisionedConcurrency"] == 0


def test_retries_while_iam_propagates(aws, monkeypatch):
    from botocore.exceptions import ClientError

    operator = make_operator(aws)
    real_create = operator.hook.conn.create_function
    calls = []

    def flaky_create(**kwargs):
        calls.append(1)
        if len(calls) < 3:
            raise ClientError(
                {
                    "Error": {
                        "Code": "InvalidParameterValueException",
                        "Message": "The role defined for the function cannot be assumed by Lambda.",
                    }
                },
                "CreateFunction",
            )
        return real_create(**kwargs)

    monkeypatch.setattr(operator.hook.conn, "create_function", flaky_create)
    operator.execute({})
    assert len(calls) == 3


def test_gives_up_on_a_role_that_never_becomes_assumable_and_fails_fast_on_other_errors(aws, monkeypatch):
    from botocore.exceptions import ClientError

    from dog_breed.operators.lambda_deploy import ROLE_PROPAGATION_ATTEMPTS

    def refuse(code: str, message: str):
        calls = []

        def create(**kwargs):
            calls.append(1)
            raise ClientError({"Error": {"Code": code, "Message": message}}, "CreateFunction")

        return calls, create

    operator = make_operator(aws)
    calls, create = refuse("InvalidParameterValueException", "The role cannot be assumed by Lambda.")
    monkeypatch.setattr(operator.hook.conn, "create_function", create)
    with pytest.raises(ClientError, match="cannot be assumed"):
        operator.execute({})
    assert len(calls) == ROLE_PROPAGATION_ATTEMPTS
    operator = make_operator(aws)
    calls, create = refuse("CodeStorageExceededException", "Code storage limit exceeded.")
    monkeypatch.setattr(operator.hook.conn, "create_function", create)
    with pytest.raises(ClientError, match="Code storage"):
        operator.execute({})
    assert len(calls) == 1


def test_waits_through_the_custom_waiter_until_provisioned_concurrency_is_ready(aws):
    _, fake, _ = aws
    fake.pending = 3
    result = make_operator(aws).execute({})
    assert fake.reads == 4 + 1  # the waiter until READY, then the allocation it reports
    assert result["ProvisionedConcurrency"] == 2


def test_failed_provisioned_concurrency_fails_the_task_with_its_reason(aws):
    from airflow.providers.amazon.aws.exceptions import WaiterTerminalFailure

    _, fake, _ = aws
    fake.pending, fake.final = 1, "FAILED"
    with pytest.raises(WaiterTerminalFailure, match="Provisioned concurrency failed"):
        make_operator(aws).execute({})


def test_deferrable_hands_the_readiness_wait_to_the_triggerer(aws):
    from airflow.sdk.exceptions import AirflowException, TaskDeferred

    from dog_breed.triggers import LambdaProvisionedConcurrencyReadyTrigger

    _, fake, _ = aws
    fake.pending = 1
    operator = make_operator(aws, deferrable=True, waiter_delay=7, waiter_max_attempts=11)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, LambdaProvisionedConcurrencyReadyTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "dog_breed.triggers.LambdaProvisionedConcurrencyReadyTrigger"
    assert kwargs == {
        "function_name": "dog-breed-classifier",
        "qualifier": "live",
        "waiter_delay": 7,
        "waiter_max_attempts": 11,
        "aws_conn_id": "aws_default",
        "region_name": REGION,
    }
    assert LambdaProvisionedConcurrencyReadyTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert trigger.waiter_name in trigger.hook().list_waiters()
    resumed = deferred.value
    result = getattr(operator, resumed.method_name)({}, {"status": "success"}, **resumed.kwargs)
    assert result["ProvisionedConcurrency"] == 2 and result["Alias"] == "live"
    with pytest.raises(AirflowException, match="Insufficient"):
        operator.execute_complete(
            {}, {"status": "error", "message": "Insufficient concurrency"}, **resumed.kwargs
        )


def test_the_connection_settings_reach_every_client(aws):
    operator = make_operator(aws, **airflow_fixtures.CLIENT_SETTINGS)
    airflow_fixtures.assert_client_settings_reached(operator.hook.conn, "lambda")
    airflow_fixtures.assert_client_settings_reached(operator.iam_hook.conn, "iam", region="aws-global")


def test_zip_is_deterministic(tmp_path):
    source = tmp_path / "lambda_function.py"
    source.write_text("x = 1\n")
    first = build_zip(source)
    source.touch()
    assert build_zip(source) == first
    assert code_sha256(first) == code_sha256(build_zip(source))


def test_template_fields():
    assert {
        "aws_conn_id",
        "region_name",
        "verify",
        "function_name",
        "endpoint_name",
        "memory_size",
        "timeout",
        "provisioned_concurrency",
    } <= set(LambdaDeployFunctionOperator.template_fields)
