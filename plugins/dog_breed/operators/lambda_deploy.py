"""Deploy the Lambda that fronts the endpoint: role, code, configuration, version, alias,
provisioned concurrency. Every step converges, so a rerun changes nothing that is right."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import tenacity
from airflow.configuration import conf
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from botocore.exceptions import ClientError

from dog_breed.hooks import PipelineLambdaHook
from dog_breed.links import LambdaFunctionLink
from dog_breed.naming import lambda_role_name
from dog_breed.packaging import default_model_scripts_dir
from dog_breed.policies import lambda_invoke_endpoint_policy, trust_policy

INLINE_POLICY_NAME = "invoke-one-endpoint"
HANDLER = "lambda_function.lambda_handler"
RUNTIME = "python3.12"
ALIAS = "live"
PROVISIONED_CONCURRENCY_READY = "ProvisionedConcurrencyReady"  # waiters/lambda.json
# A new role takes a few seconds to become assumable by Lambda (IAM is eventually consistent).
ROLE_PROPAGATION_ATTEMPTS = 10
ROLE_PROPAGATION_DELAY_S = 6.0
T = TypeVar("T")


def build_zip(source_file: Path, arcname: str = "lambda_function.py") -> bytes:
    """A deployment package with a fixed timestamp, so the same code gives the same CodeSha256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, source_file.read_bytes())
    return buffer.getvalue()


def code_sha256(payload: bytes) -> str:
    """Lambda's CodeSha256: base64 of the SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(payload).digest()).decode()


def desired_configuration(
    *, function_name: str, role_arn: str, endpoint_name: str, memory_size: int, timeout: int
) -> dict[str, Any]:
    """The UpdateFunctionConfiguration / CreateFunction fields this operator owns."""
    return {
        "FunctionName": function_name,
        "Role": role_arn,
        "Handler": HANDLER,
        "Runtime": RUNTIME,
        "MemorySize": memory_size,
        "Timeout": timeout,
        "Environment": {"Variables": {"ENDPOINT_NAME": endpoint_name}},
        "Description": f"Classifies dog photos with SageMaker endpoint {endpoint_name}",
    }


def configuration_drift(current: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    """Fields whose live value differs from the desired one."""
    drift = []
    for key, value in desired.items():
        if key == "FunctionName":
            continue
        live = current.get(key)
        if key == "Environment":
            live = {"Variables": (live or {}).get("Variables", {})}
        if live != value:
            drift.append(key)
    return drift


def role_not_assumable_yet(error: BaseException) -> bool:
    """Lambda's answer while IAM has not yet propagated a role created moments ago."""
    if not isinstance(error, ClientError):
        return False
    details = error.response["Error"]
    message = details.get("Message", "")
    return details["Code"] == "InvalidParameterValueException" and (
        "cannot be assumed" in message or "role" in message.lower()
    )


class LambdaDeployFunctionOperator(AwsBaseOperator[PipelineLambdaHook]):
    """Create or update a Lambda function that invokes one SageMaker endpoint.

    IAM: role ``<function>-lambda-role`` trusted by Lambda, with one inline policy
    (``sagemaker:InvokeEndpoint`` on this endpoint's ARN, logs of this function).
    Lambda: create or update code (only if CodeSha256 differs) and configuration (only
    if it drifted), wait until the update succeeded, publish a version (Lambda returns
    the latest one when nothing changed), point alias ``live`` at it, put provisioned
    concurrency on the alias and wait for READY (in the triggerer when ``deferrable``).

    :param function_name: the function (templated)
    :param endpoint_name: the endpoint it invokes, and nothing else (templated)
    :param memory_size: MB (templated)
    :param timeout: seconds (templated)
    :param provisioned_concurrency: on the alias; 0 removes it (templated)
    :param alias_name: the alias the smoke test and clients call (templated)
    :param source_file: the handler; ``model_scripts/lambda_function.py`` by default
    :param waiter_delay: seconds between polls of every wait
    :param waiter_max_attempts: polls before a wait gives up
    :param role_propagation_delay: seconds between retries while IAM propagates a new role
    :param deferrable: wait for provisioned concurrency in the triggerer
    """

    aws_hook_class = PipelineLambdaHook
    template_fields: Sequence[str] = aws_template_fields(
        "function_name",
        "endpoint_name",
        "memory_size",
        "timeout",
        "provisioned_concurrency",
        "alias_name",
    )
    ui_color = "#ff9900"
    operator_extra_links = (LambdaFunctionLink(),)

    def __init__(
        self,
        *,
        function_name: str,
        endpoint_name: str,
        memory_size: int = 512,
        timeout: int = 60,
        provisioned_concurrency: int = 2,
        alias_name: str = ALIAS,
        source_file: str | None = None,
        waiter_delay: float = 5.0,
        waiter_max_attempts: int = 120,
        role_propagation_delay: float = ROLE_PROPAGATION_DELAY_S,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.function_name = function_name
        self.endpoint_name = endpoint_name
        self.memory_size = memory_size
        self.timeout = timeout
        self.provisioned_concurrency = provisioned_concurrency
        self.alias_name = alias_name
        self.source_file = source_file
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.role_propagation_delay = role_propagation_delay
        self.deferrable = deferrable

    @cached_property
    def iam_hook(self) -> AwsBaseHook:
        return AwsBaseHook(client_type="iam", **self._hook_parameters)

    def execute(self, context: Any) -> dict[str, Any]:
        LambdaFunctionLink.persist_for(context, self, self.function_name)
        lam = self.hook.conn
        role_arn = self.ensure_role(
            self.iam_hook.conn, region=lam.meta.region_name, account=self.hook.account_id
        )
        source = (
            Path(self.source_file) if self.source_file else default_model_scripts_dir() / "lambda_function.py"
        )
        payload = build_zip(source)
        desired = desired_configuration(
            function_name=self.function_name,
            role_arn=role_arn,
            endpoint_name=self.endpoint_name,
            memory_size=self.memory_size,
            timeout=self.timeout,
        )
        function_arn = self.ensure_function(lam, desired, payload)
        version = lam.publish_version(FunctionName=self.function_name, CodeSha256=code_sha256(payload))[
            "Version"
        ]
        self._wait("published_version_active", Qualifier=version)
        deployed = {
            "FunctionName": self.function_name,
            "FunctionArn": function_arn,
            "Version": version,
            "Alias": self.alias_name,
            "AliasArn": self.ensure_alias(lam, version),
            "RoleArn": role_arn,
            "CodeSha256": code_sha256(payload),
        }
        if not self.put_provisioned_concurrency(lam, self.provisioned_concurrency):
            return {**deployed, "ProvisionedConcurrency": 0}
        if self.deferrable:
            from dog_breed.triggers import LambdaProvisionedConcurrencyReadyTrigger, connection_of

            self.defer(
                trigger=LambdaProvisionedConcurrencyReadyTrigger(
                    function_name=self.function_name,
                    qualifier=self.alias_name,
                    waiter_delay=int(self.waiter_delay),
                    waiter_max_attempts=self.waiter_max_attempts,
                    **connection_of(self),
                ),
                method_name="execute_complete",
                kwargs={"deployed": deployed},
                timeout=timedelta(seconds=self.waiter_delay * self.waiter_max_attempts + 60),
            )
        from airflow.providers.amazon.aws.utils.waiter_with_logging import wait

        wait(
            waiter=self.hook.get_waiter(PROVISIONED_CONCURRENCY_READY),
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            args={"FunctionName": self.function_name, "Qualifier": self.alias_name},
            failure_message="Provisioned concurrency failed",
            status_message="Provisioned concurrency",
            status_args=["Status", "StatusReason"],
        )
        return self.execute_complete(context, {"status": "success"}, deployed)

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, deployed: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """After provisioned concurrency became READY (or did not): what was deployed."""
        from airflow.providers.amazon.aws.utils import validate_execute_complete_event
        from airflow.sdk.exceptions import AirflowException

        event = validate_execute_complete_event(event)
        if event["status"] != "success":
            raise AirflowException(
                f"provisioned concurrency of {self.function_name}:{self.alias_name}: {event.get('message')}"
            )
        allocated = self._provisioned_concurrency(self.hook.conn) or {}
        return {
            **(deployed or {}),
            "ProvisionedConcurrency": int(allocated.get("AllocatedProvisionedConcurrentExecutions", 0)),
        }

    def ensure_role(self, iam, *, region: str, account: str) -> str:
        name = lambda_role_name(self.function_name)
        trust = json.dumps(trust_policy("lambda.amazonaws.com"))
        try:
            role = iam.get_role(RoleName=name)["Role"]
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=trust)
        except ClientError as error:
            if error.response["Error"]["Code"] != "NoSuchEntity":
                raise
            role = iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=trust,
                Description=f"Lambda {self.function_name}: invoke endpoint {self.endpoint_name} only",
            )["Role"]
            self.log.info("Created role %s", name)
        policy = lambda_invoke_endpoint_policy(
            region=region, account=account, endpoint_name=self.endpoint_name, function_name=self.function_name
        )
        # PutRolePolicy replaces the inline policy of that name: one policy, however many reruns.
        iam.put_role_policy(RoleName=name, PolicyName=INLINE_POLICY_NAME, PolicyDocument=json.dumps(policy))
        return role["Arn"]

    def ensure_function(self, lam, desired: dict[str, Any], payload: bytes) -> str:
        try:
            current = lam.get_function_configuration(FunctionName=self.function_name)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            created = self._retry_role_propagation(
                lambda: lam.create_function(
                    **desired, Code={"ZipFile": payload}, PackageType="Zip", Publish=False
                )
            )
            self.log.info("Created function %s", self.function_name)
            self._wait("function_active_v2")
            return created["FunctionArn"]
        self._wait("function_updated_v2")
        if current.get("CodeSha256") != code_sha256(payload):
            lam.update_function_code(FunctionName=self.function_name, ZipFile=payload)
            self.log.info("Updated code of %s", self.function_name)
            self._wait("function_updated_v2")
        drift = configuration_drift(current, desired)
        if drift:
            self._retry_role_propagation(lambda: lam.update_function_configuration(**desired))
            self.log.info("Updated configuration of %s: %s", self.function_name, drift)
            self._wait("function_updated_v2")
        self._wait("function_active_v2")
        return current["FunctionArn"]

    def ensure_alias(self, lam, version: str) -> str:
        try:
            alias = lam.get_alias(FunctionName=self.function_name, Name=self.alias_name)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            return lam.create_alias(
                FunctionName=self.function_name, Name=self.alias_name, FunctionVersion=version
            )["AliasArn"]
        if alias["FunctionVersion"] != version:
            alias = lam.update_alias(
                FunctionName=self.function_name, Name=self.alias_name, FunctionVersion=version
            )
        return alias["AliasArn"]

    def put_provisioned_concurrency(self, lam, wanted: int) -> bool:
        """Ask for ``wanted`` on the alias (0 removes it); True when there is something to wait for."""
        qualifier = {"FunctionName": self.function_name, "Qualifier": self.alias_name}
        current = self._provisioned_concurrency(lam)
        if wanted == 0:
            if current is not None:
                lam.delete_provisioned_concurrency_config(**qualifier)
            return False
        if current is None or current.get("RequestedProvisionedConcurrentExecutions") != wanted:
            lam.put_provisioned_concurrency_config(**qualifier, ProvisionedConcurrentExecutions=wanted)
        return True

    def _provisioned_concurrency(self, lam) -> dict[str, Any] | None:
        try:
            return lam.get_provisioned_concurrency_config(
                FunctionName=self.function_name, Qualifier=self.alias_name
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ProvisionedConcurrencyConfigNotFoundException":
                return None
            raise

    def _retry_role_propagation(self, call: Callable[[], T]) -> T:
        """``call()``, retried while Lambda cannot assume a role IAM has only just created."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(role_not_assumable_yet),
            stop=tenacity.stop_after_attempt(ROLE_PROPAGATION_ATTEMPTS),
            wait=tenacity.wait_fixed(self.role_propagation_delay),
            before_sleep=lambda state: self.log.info(
                "Role not assumable yet (attempt %d): %s", state.attempt_number, state.outcome.exception()
            ),
            reraise=True,
        )
        return retrying(call)

    def _wait(self, waiter: str, **extra: Any) -> None:
        self.hook.get_waiter(waiter).wait(
            FunctionName=self.function_name,
            **extra,
            WaiterConfig={"Delay": self.waiter_delay, "MaxAttempts": self.waiter_max_attempts},
        )
