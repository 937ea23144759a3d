"""Smoke-test the deployed chain (Lambda alias -> endpoint) with real test images, and roll the
endpoint back to its previous endpoint config when the answers are wrong."""

from __future__ import annotations

import base64
import json
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any, NoReturn

from airflow.configuration import conf
from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from dog_breed.dataset import CLASS_FOLDER, IMAGE_SUFFIXES, list_keys
from dog_breed.hooks import PipelineSageMakerHook
from dog_breed.packaging import model_script
from dog_breed.s3uri import split_s3_uri


class SmokeTestFailed(AirflowFailException):
    """The deployed model answered wrongly or not at all (no retry: the endpoint was rolled back)."""


@dataclass(frozen=True)
class TestImage:
    key: str
    class_folder: str


def pick_test_images(keys: Iterable[str], count: int) -> list[TestImage]:
    """``count`` images spread over as many classes as possible, the same ones on every run."""
    by_class: dict[str, list[str]] = {}
    for key in sorted(keys):
        parts = key.split("/")
        if len(parts) >= 2 and CLASS_FOLDER.match(parts[-2]) and key.lower().endswith(IMAGE_SUFFIXES):
            by_class.setdefault(parts[-2], []).append(key)
    picked: list[TestImage] = []
    depth = 0
    while len(picked) < count and any(len(v) > depth for v in by_class.values()):
        for folder in sorted(by_class):
            if depth < len(by_class[folder]) and len(picked) < count:
                picked.append(TestImage(by_class[folder][depth], folder))
        depth += 1
    return picked


def validate_response(
    response: Mapping[str, Any], *, classes: set[str], top_k: int
) -> tuple[dict, list[str]]:
    """Check one Lambda response against the serving contract; returns (parsed body, problems)."""
    if response.get("statusCode") != 200:
        return {}, [f"statusCode {response.get('statusCode')!r}: {str(response.get('body'))[:200]}"]
    body = response.get("body")
    try:
        body = json.loads(body) if isinstance(body, str) else body
    except json.JSONDecodeError as error:
        return {}, [f"body is not JSON: {error}"]
    if not isinstance(body, dict):
        return {}, ["body is not a JSON object"]
    contract = model_script("serving_contract")
    return body, contract.response_problems(body, classes=classes, top_k=top_k, with_latency=True)


def summarize(latencies_ms: list[float], correct: list[bool]) -> dict[str, float]:
    return {
        "latency_ms_p50": statistics.median(latencies_ms) if latencies_ms else 0.0,
        "latency_ms_max": max(latencies_ms, default=0.0),
        "top1_accuracy": sum(correct) / len(correct) if correct else 0.0,
    }


class EndpointSmokeTestOperator(AwsBaseOperator[LambdaHook]):
    """Invoke the Lambda alias with ``image_count`` test images and check every answer.

    The event is ``{"image": <base64>, "content_type": "image/jpeg", "top_k": 3}``; the
    response must be ``statusCode`` 200 with a body that keeps the serving contract
    (``model_scripts/serving_contract.py``): predictions sorted, probabilities in [0, 1],
    class folders from the dataset. Records latency p50/max and top-1 accuracy against each
    image's folder (returned and logged). On any failure, and when
    ``rollback_endpoint_config`` is set, UpdateEndpoint back to it, wait until it is
    InService there (in the triggerer when ``deferrable``: that can take an hour), put that
    config's champion tags back on the endpoint, then fail. Before rolling back, the registry
    version of this run's model (``model_package_arn``) is marked Rejected with the failure
    (``PipelineSageMakerHook.record_rollback``).

    :param function_name: the Lambda (templated)
    :param qualifier: its alias (templated)
    :param dataset_s3_uri: dogImages root; images come from its test/ split (templated)
    :param endpoint_name: the endpoint behind the Lambda (templated)
    :param image_count: images to send (templated)
    :param top_k: predictions asked for per image
    :param min_top1_accuracy: fail below this top-1 accuracy (templated)
    :param rollback_endpoint_config: the config to go back to; None on a first deployment (templated)
    :param model_package_arn: the registry version being tested, marked on a rollback (templated)
    :param waiter_delay: seconds between polls while the endpoint rolls back
    :param waiter_max_attempts: polls before the rollback wait gives up
    :param deferrable: wait for the rollback in the triggerer
    """

    aws_hook_class = LambdaHook
    template_fields: Sequence[str] = aws_template_fields(
        "function_name",
        "qualifier",
        "dataset_s3_uri",
        "image_count",
        "endpoint_name",
        "rollback_endpoint_config",
        "model_package_arn",
        "min_top1_accuracy",
    )
    ui_color = "#c6e5b1"

    def __init__(
        self,
        *,
        function_name: str,
        dataset_s3_uri: str,
        endpoint_name: str,
        qualifier: str = "live",
        image_count: int = 5,
        top_k: int = 3,
        min_top1_accuracy: float = 0.0,
        rollback_endpoint_config: str | None = None,
        model_package_arn: str | None = None,
        waiter_delay: int = 30,
        waiter_max_attempts: int = 120,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.function_name = function_name
        self.qualifier = qualifier
        self.dataset_s3_uri = dataset_s3_uri
        self.endpoint_name = endpoint_name
        self.image_count = image_count
        self.top_k = top_k
        self.min_top1_accuracy = min_top1_accuracy
        self.rollback_endpoint_config = rollback_endpoint_config
        self.model_package_arn = model_package_arn
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.deferrable = deferrable

    @cached_property
    def s3_hook(self) -> S3Hook:
        return S3Hook(**self._hook_parameters)

    @cached_property
    def sagemaker_hook(self) -> PipelineSageMakerHook:
        return PipelineSageMakerHook(**self._hook_parameters)

    def execute(self, context: Any) -> dict[str, Any]:
        if self.rollback_endpoint_config:
            current = self.sagemaker_hook.describe_endpoint(self.endpoint_name)
            if current["EndpointConfigName"] == self.rollback_endpoint_config:
                raise SmokeTestFailed(
                    f"{self.endpoint_name} serves {self.rollback_endpoint_config}, its config before this "
                    "run: an earlier attempt rolled it back; testing it again would not test this run's model"
                )
        try:
            report = self.run_checks()
        except Exception as error:
            self.log.error("Smoke test failed: %s", error)
            failure = (
                str(error) if isinstance(error, AirflowException) else f"smoke test could not run: {error}"
            )
            self.roll_back(failure)
        self.log.info("Smoke test passed: %s", json.dumps(report))
        return report

    def run_checks(self) -> dict[str, Any]:
        s3 = self.s3_hook.conn
        test_keys = list_keys(s3, self.dataset_s3_uri, "test")
        classes = {image.class_folder for image in pick_test_images(test_keys, len(test_keys))}
        images = pick_test_images(test_keys, self.image_count)
        if not images:
            raise SmokeTestFailed(f"no test images under {self.dataset_s3_uri}/test/")
        bucket, _ = split_s3_uri(self.dataset_s3_uri)
        latencies, correct, problems, runtime = [], [], [], None
        predictions: list[dict[str, Any]] = []
        for image in images:
            data = s3.get_object(Bucket=bucket, Key=image.key)["Body"].read()
            event = {
                "image": base64.b64encode(data).decode(),
                "content_type": "image/jpeg",
                "top_k": self.top_k,
            }
            started = time.perf_counter()
            answer = self.hook.invoke_lambda(
                function_name=self.function_name,
                qualifier=self.qualifier,
                invocation_type="RequestResponse",
                payload=json.dumps(event),
            )
            latencies.append((time.perf_counter() - started) * 1000)
            raw = answer["Payload"].read()
            if answer.get("FunctionError"):
                problems.append(f"{image.key}: function error {raw[:300]!r}")
                continue
            body, found = validate_response(json.loads(raw), classes=classes, top_k=self.top_k)
            problems.extend(f"{image.key}: {problem}" for problem in found)
            if not found:
                top = body["predictions"][0]
                correct.append(top["class_folder"] == image.class_folder)
                runtime = body["runtime"]
                predictions.append(
                    {
                        "image": image.key.rsplit("/", 1)[-1],
                        "expected": image.class_folder,
                        "predicted": top["class_folder"],
                        "probability": round(float(top["probability"]), 4),
                        "latency_ms": round(latencies[-1], 1),
                    }
                )
        report = {
            "images": len(images),
            "runtime": runtime,
            **summarize(latencies, correct),
            "problems": problems,
            "predictions": predictions,
        }
        if problems:
            raise SmokeTestFailed(f"{len(problems)} problem(s): {problems[:5]}")
        if report["top1_accuracy"] < self.min_top1_accuracy:
            raise SmokeTestFailed(
                f"top-1 accuracy {report['top1_accuracy']:.2f} below {self.min_top1_accuracy:.2f}"
            )
        return report

    def roll_back(self, failure: str) -> NoReturn:
        """Put the endpoint back on its previous endpoint config (no-op when it is already there),
        wait until it serves it, then fail with ``failure``."""
        target = self.rollback_endpoint_config
        if not target:
            self.log.warning(
                "No previous endpoint config recorded (first deployment): nothing to roll back to."
            )
            raise SmokeTestFailed(failure)
        # The registry first: whatever the rollback's wait does, this version is not deployed again.
        recorded = self.sagemaker_hook.record_rollback(
            self.model_package_arn, endpoint_name=self.endpoint_name, by="the smoke test", reason=failure
        )
        failure = f"{failure} {recorded}".rstrip()
        current = self.sagemaker_hook.describe_endpoint(self.endpoint_name)
        if current["EndpointConfigName"] != target:
            self.log.warning("Rolling %s back to %s", self.endpoint_name, target)
            self.sagemaker_hook.conn.update_endpoint(
                EndpointName=self.endpoint_name, EndpointConfigName=target
            )
        if self.deferrable:
            from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger

            from dog_breed.triggers import connection_of

            self.defer(
                trigger=SageMakerTrigger(
                    job_name=self.endpoint_name,
                    job_type="endpoint",
                    waiter_delay=self.waiter_delay,
                    waiter_max_attempts=self.waiter_max_attempts,
                    **connection_of(self),
                ),
                method_name="execute_complete",
                kwargs={"failure": failure},
                timeout=timedelta(seconds=self.waiter_delay * self.waiter_max_attempts + 60),
            )
        self.sagemaker_hook.get_waiter("endpoint_in_service").wait(
            EndpointName=self.endpoint_name,
            WaiterConfig={"Delay": self.waiter_delay, "MaxAttempts": self.waiter_max_attempts},
        )
        self.finish_rollback(failure)

    def execute_complete(
        self, context: Any, event: dict[str, Any] | None = None, failure: str = ""
    ) -> NoReturn:
        """The deferred rollback wait ended: check where the endpoint is, then fail with ``failure``."""
        from airflow.providers.amazon.aws.utils import validate_execute_complete_event

        event = validate_execute_complete_event(event)
        if event["status"] != "success":
            raise SmokeTestFailed(
                f"{failure}; rolling {self.endpoint_name} back to {self.rollback_endpoint_config} did not "
                f"finish: {event.get('message', event['status'])}"
            )
        self.finish_rollback(failure)

    def finish_rollback(self, failure: str) -> NoReturn:
        target = self.rollback_endpoint_config
        endpoint = self.sagemaker_hook.describe_endpoint(self.endpoint_name)
        if endpoint["EndpointConfigName"] != target or endpoint["EndpointStatus"] != "InService":
            raise SmokeTestFailed(
                f"{failure}; rolling {self.endpoint_name} back to {target} failed: it is "
                f"{endpoint['EndpointStatus']} on {endpoint['EndpointConfigName']} "
                f"({endpoint.get('FailureReason', 'no reason given')})"
            )
        self.sagemaker_hook.copy_champion_tags(endpoint_name=self.endpoint_name, endpoint_config_name=target)
        self.log.warning("Endpoint %s is back on %s", self.endpoint_name, target)
        raise SmokeTestFailed(failure)
