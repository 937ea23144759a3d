"""LambdaDeployFunctionOperator against moto (IAM, Lambda). moto lacks provisioned
concurrency, so those two calls are answered by botocore before-call handlers that keep
state, which lets the rerun test still see duplicates if there were any."""

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
    """Put/Get/DeleteProvisionedConcurrencyConfig as Lambda answers them, READY at once."""

    def __init__(self) -> None:
        self.configs: dict[tuple[str, str], int] = {}
        self.puts = 0

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
        n = self.configs[key]
        body = {
            "RequestedProvisionedConcurrentExecutions": n,
            "AllocatedProvisionedConcurrentExecutions": n,
            "Status": "READY",
        }
        return SimpleNamespace(status_code=200), body

    def delete(self, params):
        self.configs.pop((params["FunctionName"], params["Qualifier"]), None)
        return SimpleNamespace(status_code=204), {}


@pytest.fixture
def aws(tmp_path, monkeypatch):
    with mock_aws():
        clients = {name: boto3.client(name, region_name=REGION) for name in ("iam", "lambda", "sts")}
        fake = FakeProvisionedConcurrency()
        fake.install(clients["lambda"])
        monkeypatch.setattr(LambdaDeployFunctionOperator, "get_client", lambda self, kind: clients[kind])
        source = tmp_path / "lambda_function.py"
        source.write_text("def lambda_handler(event, context):\n    return {'statusCode': 200}\n")
        yield clients, fake, source


def make_operator(source, **overrides) -> LambdaDeployFunctionOperator:
    args = {
        "task_id": "deploy_lambda",
        "function_name": "dog-breed-classifier",
        "endpoint_name": "dog-breed-classifier",
        "source_file": str(source),
        "waiter_delay": 0.01,
        "role_propagation_delay": 0.01,
    }
    return LambdaDeployFunctionOperator(**{**args, **overrides})


def test_deploys_role_function_version_alias_and_concurrency(aws):
    clients, fake, source = aws
    result = make_operator(source, memory_size="1024", timeout=30).execute({})
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
    clients, fake, source = aws
    first = make_operator(source).execute({})
    second = make_operator(source).execute({})
    lam, iam = clients["lambda"], clients["iam"]
    assert second["RoleArn"] == first["RoleArn"] and second["CodeSha256"] == first["CodeSha256"]
    assert second["AliasArn"] == first["AliasArn"]
    assert len(iam.list_roles()["Roles"]) == 1
    assert len(lam.list_functions()["Functions"]) == 1
    assert [a["Name"] for a in lam.list_aliases(FunctionName="dog-breed-classifier")["Aliases"]] == ["live"]
    assert fake.puts == 1  # the second run found READY at the requested level


def test_new_code_publishes_a_new_version_and_moves_the_alias(aws):
    clients, fake, source = aws
    first = make_operator(source).execute({})
    source.write_text("def lambda_handler(event, context):\n    return {'statusCode': 201}\n")
    second = make_operator(source, provisioned_concurrency=0).execute({})
    assert second["CodeSha256"] != first["CodeSha256"]
    alias = clients["lambda"].get_alias(FunctionName="dog-breed-classifier", Name="live")
    assert alias["FunctionVersion"] == second["Version"]
    assert fake.configs == {} and second["ProvisionedConcurrency"] == 0


def test_retries_while_iam_propagates(aws, monkeypatch):
    clients, _, source = aws
    from botocore.exceptions import ClientError

    real_create = clients["lambda"].create_function
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

    monkeypatch.setattr(clients["lambda"], "create_function", flaky_create)
    make_operator(source).execute({})
    assert len(calls) == 3


def test_zip_is_deterministic(tmp_path):
    source = tmp_path / "lambda_function.py"
    source.write_text("x = 1\n")
    first = build_zip(source)
    source.touch()
    assert build_zip(source) == first
    assert code_sha256(first) == code_sha256(build_zip(source))


def test_template_fields():
    assert {"function_name", "endpoint_name", "memory_size", "timeout", "provisioned_concurrency"} <= set(
        LambdaDeployFunctionOperator.template_fields
    )
