"""EndpointSmokeTestOperator: test images from moto S3, Lambda answers from a fake handler
(moto's invoke needs Docker), SageMaker rollback through botocore's Stubber (moto cannot
UpdateEndpoint)."""

from __future__ import annotations

import io
import json

import airflow_fixtures
import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from dog_breed.gate import TAG_TEST_ACCURACY
from dog_breed.operators.smoke_test import (
    EndpointSmokeTestOperator,
    SmokeTestFailed,
    pick_test_images,
    validate_response,
)

REGION = airflow_fixtures.REGION
CLASSES = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
EP_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep"
CFG_ARN = "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/old-config"


def good_answer(event: dict, folder: str = CLASSES[0]) -> dict:
    others = [c for c in CLASSES if c != folder]
    predictions = [
        {"breed": c.split(".")[1], "class_folder": c, "index": CLASSES.index(c), "probability": p}
        for c, p in zip([folder, *others], [0.7, 0.2, 0.1], strict=True)
    ][: event["top_k"]]
    body = {"predictions": predictions, "top_k": event["top_k"], "runtime": "onnxruntime", "latency_ms": 12.5}
    return {"statusCode": 200, "body": json.dumps(body)}


class FakeLambda:
    def __init__(self, answer) -> None:
        self.answer = answer
        self.events: list[dict] = []

    def install(self, client) -> None:
        client.meta.events.register("before-parameter-build.lambda.Invoke", self._remember)
        client.meta.events.register("before-call.lambda.Invoke", self._invoke)

    @staticmethod
    def _remember(params, context, **_):
        context["api_params"] = dict(params)

    def _invoke(self, context, **_):
        from types import SimpleNamespace

        event = json.loads(context["api_params"]["Payload"])
        assert context["api_params"]["Qualifier"] == "live"
        self.events.append(event)
        return SimpleNamespace(status_code=200), {
            "StatusCode": 200,
            "Payload": io.BytesIO(json.dumps(self.answer(event)).encode()),
        }


@pytest.fixture
def world(monkeypatch):
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data")
        for folder in CLASSES:
            for i in range(2):
                s3.put_object(
                    Bucket="data", Key=f"dogImages/test/{folder}/{folder}_{i}.jpg", Body=b"\xff\xd8jpeg"
                )
        lam = boto3.client("lambda", region_name=REGION)
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        clients = {"s3": s3, "lambda": lam, "sagemaker": sagemaker}
        monkeypatch.setattr(EndpointSmokeTestOperator, "get_client", lambda self, kind: clients[kind])
        yield clients


def make_operator(**overrides) -> EndpointSmokeTestOperator:
    args = {
        "task_id": "smoke_test",
        "function_name": "fn",
        "dataset_s3_uri": "s3://data/dogImages",
        "endpoint_name": "ep",
        "image_count": "4",
        "waiter_delay": 0,
    }
    return EndpointSmokeTestOperator(**{**args, **overrides})


def test_passes_and_reports_latency_and_top1(world):
    fake = FakeLambda(good_answer)
    fake.install(world["lambda"])
    report = make_operator().execute({})
    assert report["images"] == 4 and len(fake.events) == 4
    assert {e["content_type"] for e in fake.events} == {"image/jpeg"} and fake.events[0]["top_k"] == 3
    assert report["top1_accuracy"] == pytest.approx(2 / 4)  # the fake always answers the first breed
    assert report["latency_ms_max"] >= report["latency_ms_p50"] > 0
    assert report["runtime"] == "onnxruntime" and report["problems"] == []


def test_bad_answers_roll_back_to_the_previous_config_then_fail(world):
    FakeLambda(lambda event: {"statusCode": 500, "body": "boom"}).install(world["lambda"])
    sagemaker = world["sagemaker"]
    with Stubber(sagemaker) as stub:
        stub.add_response("describe_endpoint", endpoint("new-config"), {"EndpointName": "ep"})  # pre-check
        stub.add_response("describe_endpoint", endpoint("new-config"), {"EndpointName": "ep"})
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": EP_ARN},
            {"EndpointName": "ep", "EndpointConfigName": "old-config"},
        )
        stub.add_response("describe_endpoint", endpoint("old-config"), {"EndpointName": "ep"})  # waiter
        stub.add_response("describe_endpoint_config", endpoint_config(), {"EndpointConfigName": "old-config"})
        stub.add_response("describe_endpoint", endpoint("old-config"), {"EndpointName": "ep"})
        stub.add_response(
            "list_tags", {"Tags": [{"Key": TAG_TEST_ACCURACY, "Value": "0.8"}]}, {"ResourceArn": CFG_ARN}
        )
        stub.add_response(
            "add_tags",
            {"Tags": []},
            {"ResourceArn": EP_ARN, "Tags": [{"Key": TAG_TEST_ACCURACY, "Value": "0.8"}]},
        )
        with pytest.raises(SmokeTestFailed, match="statusCode 500"):
            make_operator(rollback_endpoint_config="old-config").execute({})
        stub.assert_no_pending_responses()


def test_a_retry_after_a_rollback_fails_without_testing_the_old_model(world):
    fake = FakeLambda(good_answer)
    fake.install(world["lambda"])
    with Stubber(world["sagemaker"]) as stub:
        stub.add_response("describe_endpoint", endpoint("old-config"), {"EndpointName": "ep"})
        with pytest.raises(SmokeTestFailed, match="rolled it back"):
            make_operator(rollback_endpoint_config="old-config").execute({})
    assert fake.events == []


def test_first_deployment_failure_fails_without_rollback(world):
    FakeLambda(lambda event: {"statusCode": 200, "body": "{}"}).install(world["lambda"])
    with Stubber(world["sagemaker"]) as stub:  # no SageMaker call expected at all
        with pytest.raises(SmokeTestFailed):
            make_operator().execute({})
        stub.assert_no_pending_responses()


def endpoint(config: str) -> dict:
    return {
        "EndpointName": "ep",
        "EndpointArn": EP_ARN,
        "EndpointConfigName": config,
        "EndpointStatus": "InService",
        "CreationTime": "2025-01-01T00:00:00Z",
        "LastModifiedTime": "2025-01-01T00:00:00Z",
    }


def endpoint_config() -> dict:
    return {
        "EndpointConfigName": "old-config",
        "EndpointConfigArn": CFG_ARN,
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "m"}],
        "CreationTime": "2025-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda b: b["predictions"].reverse(), "not sorted"),
        (lambda b: b["predictions"][0].update(probability=1.5), "outside"),
        (lambda b: b["predictions"][0].update(class_folder="999.Cat"), "unknown class"),
        (lambda b: b["predictions"].pop(), "top 3"),
        (lambda b: b["predictions"][1].pop("breed"), "breed"),
        (lambda b: b.pop("latency_ms"), "latency_ms"),
    ],
)
def test_validate_response_catches_each_contract_breach(mutate, problem):
    answer = good_answer({"top_k": 3})
    _, problems = validate_response(answer, classes=set(CLASSES), top_k=3)
    assert problems == []
    body = json.loads(answer["body"])
    mutate(body)
    _, problems = validate_response(
        {"statusCode": 200, "body": json.dumps(body)}, classes=set(CLASSES), top_k=3
    )
    assert any(problem in p for p in problems), problems


def test_pick_test_images_spreads_over_classes_deterministically():
    keys = [f"dogImages/test/{c}/{i}.jpg" for c in CLASSES for i in range(3)]
    picked = pick_test_images(reversed(keys), 4)
    assert [p.class_folder for p in picked] == [*CLASSES, CLASSES[0]]
    assert picked == pick_test_images(keys, 4)
