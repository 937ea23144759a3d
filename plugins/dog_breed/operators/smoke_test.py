"""Smoke-test the deployed chain (Lambda alias -> endpoint) with real test images, and roll the
endpoint back to its previous endpoint config when the answers are wrong."""

from __future__ import annotations

import base64
import json
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from dog_breed.dataset import CLASS_FOLDER, IMAGE_SUFFIXES, list_keys
from dog_breed.gate import copy_champion_tags
from dog_breed.params import AWS_CONN_ID
from dog_breed.policies import split_s3_uri

PREDICTION_FIELDS = {"breed": str, "class_folder": str, "index": int, "probability": float}


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


def _has_type(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


def validate_response(
    response: Mapping[str, Any], *, classes: set[str], top_k: int
) -> tuple[dict, list[str]]:
    """Check one Lambda response against the contract; returns (parsed body, problems)."""
    if response.get("statusCode") != 200:
        return {}, [f"statusCode {response.get('statusCode')!r}: {str(response.get('body'))[:200]}"]
    body = response.get("body")
    try:
        body = json.loads(body) if isinstance(body, str) else body
    except json.JSONDecodeError as error:
        return {}, [f"body is not JSON: {error}"]
    if not isinstance(body, dict):
        return {}, ["body is not a JSON object"]
    predictions = body.get("predictions")
    if not isinstance(predictions, list) or not predictions:
        return body, ["no predictions"]
    problems = []
    if body.get("top_k") != top_k or len(predictions) != top_k:
        problems.append(
            f"asked for top {top_k}, got top_k={body.get('top_k')!r} with {len(predictions)} predictions"
        )
    if not _has_type(body.get("runtime"), str):
        problems.append("runtime missing")
    if not _has_type(body.get("latency_ms"), float):
        problems.append("latency_ms missing")
    for position, prediction in enumerate(predictions):
        if not isinstance(prediction, dict):
            problems.append(f"prediction {position} is not an object")
            continue
        wrong = [
            name for name, kind in PREDICTION_FIELDS.items() if not _has_type(prediction.get(name), kind)
        ]
        if wrong:
            problems.append(f"prediction {position}: bad or missing {wrong}")
            continue
        if not 0.0 <= prediction["probability"] <= 1.0:
            problems.append(f"prediction {position}: probability {prediction['probability']} outside [0, 1]")
        if prediction["class_folder"] not in classes:
            problems.append(f"prediction {position}: unknown class {prediction['class_folder']!r}")
    if not problems:
        probabilities = [p["probability"] for p in predictions]
        if probabilities != sorted(probabilities, reverse=True):
            problems.append("predictions are not sorted by probability")
    return body, problems


def summarize(latencies_ms: list[float], correct: list[bool]) -> dict[str, float]:
    return {
        "latency_ms_p50": statistics.median(latencies_ms) if latencies_ms else 0.0,
        "latency_ms_max": max(latencies_ms, default=0.0),
        "top1_accuracy": sum(correct) / len(correct) if correct else 0.0,
    }


class EndpointSmokeTestOperator(BaseOperator):
    """Invoke the Lambda alias with ``image_count`` test images and check every answer.

    The event is ``{"image": <base64>, "content_type": "image/jpeg", "top_k": 3}``; the
    response must be ``statusCode`` 200 with predictions sorted, probabilities in [0, 1]
    and class folders from the dataset. Records latency p50/max and top-1 accuracy
    against each image's folder (returned and logged). On any failure, and when
    ``rollback_endpoint_config`` is set, UpdateEndpoint back to it, wait InService,
    put that config's champion tags back on the endpoint, then fail.
    """

    template_fields: Sequence[str] = (
        "function_name",
        "qualifier",
        "dataset_s3_uri",
        "image_count",
        "endpoint_name",
        "rollback_endpoint_config",
        "min_top1_accuracy",
        "region_name",
    )
    ui_color = "#c6e5b1"

    def __init__(
        self,
        *,
        function_name: str,
        dataset_s3_uri: str,
        endpoint_name: str,
        qualifier: str = "live",
        image_count: int | str = 5,
        top_k: int = 3,
        min_top1_accuracy: float | str = 0.0,
        rollback_endpoint_config: str | None = None,
        aws_conn_id: str | None = AWS_CONN_ID,
        region_name: str | None = None,
        waiter_delay: int = 30,
        waiter_max_attempts: int = 120,
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
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    def get_client(self, client_type: str):
        return AwsGenericHook(
            aws_conn_id=self.aws_conn_id, client_type=client_type, region_name=self.region_name
        ).conn

    def execute(self, context: Any) -> dict[str, Any]:
        if self.rollback_endpoint_config:
            current = self.get_client("sagemaker").describe_endpoint(EndpointName=self.endpoint_name)
            if current["EndpointConfigName"] == self.rollback_endpoint_config:
                raise SmokeTestFailed(
                    f"{self.endpoint_name} serves {self.rollback_endpoint_config}, its config before this "
                    "run: an earlier attempt rolled it back; testing it again would not test this run's model"
                )
        try:
            report = self.run_checks(self.get_client("s3"), self.get_client("lambda"))
        except Exception as error:
            self.log.error("Smoke test failed: %s", error)
            self.roll_back(self.get_client("sagemaker"))
            if isinstance(error, AirflowException):
                raise
            raise SmokeTestFailed(f"smoke test could not run: {error}") from error
        self.log.info("Smoke test passed: %s", json.dumps(report))
        return report

    def run_checks(self, s3, lam) -> dict[str, Any]:
        test_keys = list_keys(s3, self.dataset_s3_uri, "test")
        classes = {image.class_folder for image in pick_test_images(test_keys, len(test_keys))}
        images = pick_test_images(test_keys, int(self.image_count))
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
            answer = lam.invoke(
                FunctionName=self.function_name,
                Qualifier=self.qualifier,
                InvocationType="RequestResponse",
                Payload=json.dumps(event).encode(),
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
        if report["top1_accuracy"] < float(self.min_top1_accuracy):
            raise SmokeTestFailed(
                f"top-1 accuracy {report['top1_accuracy']:.2f} below {float(self.min_top1_accuracy):.2f}"
            )
        return report

    def roll_back(self, sagemaker) -> None:
        """Put the endpoint back on its previous endpoint config (no-op when it is already there)."""
        target = self.rollback_endpoint_config
        if not target:
            self.log.warning(
                "No previous endpoint config recorded (first deployment): nothing to roll back to."
            )
            return
        current = sagemaker.describe_endpoint(EndpointName=self.endpoint_name)
        if current["EndpointConfigName"] != target:
            self.log.warning("Rolling %s back to %s", self.endpoint_name, target)
            sagemaker.update_endpoint(EndpointName=self.endpoint_name, EndpointConfigName=target)
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=self.endpoint_name,
            WaiterConfig={"Delay": self.waiter_delay, "MaxAttempts": self.waiter_max_attempts},
        )
        copy_champion_tags(sagemaker, endpoint_name=self.endpoint_name, endpoint_config_name=target)
        self.log.warning("Endpoint %s is back on %s", self.endpoint_name, target)
