"""EndpointSmokeTestOperator: test images from moto S3, Lambda answers from a fake handler on
the operator's own Lambda client (moto's invoke needs Docker), SageMaker rollback through
botocore's Stubber on its SageMaker client (moto cannot UpdateEndpoint)."""

from __future__ import annotations

import io
import json

import airflow_fixtures
import boto3
import pytest
from botocore.stub import ANY, Stubber
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
def world():
    """Test images in moto's S3; the operator's Lambda and SageMaker clients are faked per test."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="data")
        for folder in CLASSES:
            for i in range(2):
                s3.put_object(
                    Bucket="data", Key=f"dogImages/test/{folder}/{folder}_{i}.jpg", Body=b"\xff\xd8jpeg"
                )
        yield


def make_operator(**overrides) -> EndpointSmokeTestOperator:
    args = {
        "task_id": "smoke_test",
        "function_name": "fn",
        "dataset_s3_uri": "s3://data/dogImages",
        "endpoint_name": "ep",
        "image_count": 4,
        "region_name": REGION,
        "waiter_delay": 0,
        "deferrable": False,
    }
    return EndpointSmokeTestOperator(**{**args, **overrides})


def test_passes_and_reports_latency_and_top1(world):
    fake = FakeLambda(good_answer)
    operator = make_operator()
    fake.install(operator.hook.conn)
    report = operator.execute({})
    assert report["images"] == 4 and len(fake.events) == 4
    assert {e["content_type"] for e in fake.events} == {"image/jpeg"} and fake.events[0]["top_k"] == 3
    assert report["top1_accuracy"] == pytest.approx(2 / 4)  # the fake always answers the first breed
    assert report["latency_ms_max"] >= report["latency_ms_p50"] > 0
    assert report["runtime"] == "onnxruntime" and report["problems"] == []


def failing_operator(**overrides) -> EndpointSmokeTestOperator:
    """A smoke test whose Lambda answers 500, with a rollback target."""
    operator = make_operator(rollback_endpoint_config="old-config", **overrides)
    FakeLambda(lambda event: {"statusCode": 500, "body": "boom"}).install(operator.hook.conn)
    return operator


def expect_rollback_start(stub: Stubber) -> None:
    stub.add_response("describe_endpoint", endpoint("new-config"), {"EndpointName": "ep"})  # pre-check
    stub.add_response("describe_endpoint", endpoint("new-config"), {"EndpointName": "ep"})
    stub.add_response(
        "update_endpoint",
        {"EndpointArn": EP_ARN},
        {"EndpointName": "ep", "EndpointConfigName": "old-config"},
    )


def expect_rollback_end(stub: Stubber) -> None:
    """The endpoint serves old-config again: its champion tags go back on the endpoint."""
    stub.add_response("describe_endpoint", endpoint("old-config"), {"EndpointName": "ep"})
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


def test_bad_answers_roll_back_to_the_previous_config_then_fail(world):
    operator = failing_operator()
    with Stubber(operator.sagemaker_hook.conn) as stub:
        expect_rollback_start(stub)
        stub.add_response("describe_endpoint", endpoint("old-config"), {"EndpointName": "ep"})  # waiter
        expect_rollback_end(stub)
        with pytest.raises(SmokeTestFailed, match="statusCode 500"):
            operator.execute({})
        stub.assert_no_pending_responses()


def test_a_rollback_first_marks_the_tested_registry_version_rejected_with_the_failure(world):
    package = "arn:aws:sagemaker:us-east-1:123456789012:model-package/dog-breed-classifier/2"
    approved = {
        "ModelPackageName": "dog-breed-classifier", "ModelPackageArn": package,
        "CreationTime": "2025-01-01T00:00:00Z", "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "ModelApprovalStatus": "Approved", "ApprovalDescription": "Approved by ada in Airflow: looks good",
    }  # fmt: skip
    operator = failing_operator(model_package_arn=package)
    updates: list[dict] = []
    operator.sagemaker_hook.conn.meta.events.register(
        "provide-client-params.sagemaker.UpdateModelPackage", lambda params, **_: updates.append(dict(params))
    )
    with Stubber(operator.sagemaker_hook.conn) as stub:
        stub.add_response("describe_endpoint", endpoint("new-config"), {"EndpointName": "ep"})  # pre-check
        stub.add_response("describe_model_package", approved, {"ModelPackageName": package})
        stub.add_response(
            "update_model_package",
            {"ModelPackageArn": package},
            {
                "ModelPackageArn": package,
                "ModelApprovalStatus": "Rejected",
                "ApprovalDescription": ANY,
            },
        )
        stub.add_response("describe_endpoint", endpoint("new-config"), {"EndpointName": "ep"})
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": EP_ARN},
            {"EndpointName": "ep", "EndpointConfigName": "old-config"},
        )
        stub.add_response("describe_endpoint", endpoint("old-config"), {"EndpointName": "ep"})  # waiter
        expect_rollback_end(stub)
        with pytest.raises(SmokeTestFailed, match=f"statusCode 500.*{package} is now Rejected"):
            operator.execute({})
        stub.assert_no_pending_responses()
    [update] = updates
    assert update["ApprovalDescription"].startswith(
        "Rejected: rolled back from endpoint ep by the smoke test: 4 problem(s): ['"
    )
    assert "statusCode 500" in update["ApprovalDescription"]
    assert update["ApprovalDescription"].endswith("(was: Approved by ada in Airflow: looks good)")


def test_the_rollback_wait_defers_and_holds_no_worker_slot(world):
    from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
    from airflow.sdk.exceptions import TaskDeferred

    operator = failing_operator(deferrable=True, waiter_delay=30, waiter_max_attempts=120)
    with Stubber(operator.sagemaker_hook.conn) as stub:
        expect_rollback_start(stub)
        with pytest.raises(TaskDeferred) as deferred:
            operator.execute({})
        stub.assert_no_pending_responses()
    trigger = deferred.value.trigger
    assert isinstance(trigger, SageMakerTrigger) and trigger.waiter_name == "endpoint_in_service"
    assert (trigger.job_name, trigger.waiter_delay, trigger.attempts) == ("ep", 30, 120)
    assert deferred.value.timeout.total_seconds() >= 3600
    with Stubber(operator.sagemaker_hook.conn) as stub:
        expect_rollback_end(stub)
        with pytest.raises(SmokeTestFailed, match="statusCode 500"):
            operator.execute_complete({}, {"status": "success", "job_name": "ep"}, **deferred.value.kwargs)
        stub.assert_no_pending_responses()
    with pytest.raises(SmokeTestFailed, match="did not finish: Waiter endpoint_in_service failed"):
        operator.execute_complete(
            {}, {"status": "error", "message": "Waiter endpoint_in_service failed"}, **deferred.value.kwargs
        )


def test_a_rollback_that_does_not_take_says_where_the_endpoint_is(world):
    operator = failing_operator()
    still_new = {**endpoint("new-config"), "FailureReason": "old-config's model cannot be loaded"}
    with Stubber(operator.sagemaker_hook.conn) as stub:
        expect_rollback_start(stub)
        stub.add_response("describe_endpoint", still_new, {"EndpointName": "ep"})  # waiter: InService
        stub.add_response("describe_endpoint", still_new, {"EndpointName": "ep"})
        with pytest.raises(
            SmokeTestFailed, match=r"InService on new-config \(old-config's model cannot be loaded"
        ):
            operator.execute({})
        stub.assert_no_pending_responses()


def test_a_retry_after_a_rollback_fails_without_testing_the_old_model(world):
    fake = FakeLambda(good_answer)
    operator = make_operator(rollback_endpoint_config="old-config")
    fake.install(operator.hook.conn)
    with Stubber(operator.sagemaker_hook.conn) as stub:
        stub.add_response("describe_endpoint", endpoint("old-config"), {"EndpointName": "ep"})
        with pytest.raises(SmokeTestFailed, match="rolled it back"):
            operator.execute({})
    assert fake.events == []


def test_first_deployment_failure_fails_without_rollback(world):
    operator = make_operator()
    FakeLambda(lambda event: {"statusCode": 200, "body": "{}"}).install(operator.hook.conn)
    with Stubber(operator.sagemaker_hook.conn) as stub:  # no SageMaker call expected at all
        with pytest.raises(SmokeTestFailed):
            operator.execute({})
        stub.assert_no_pending_responses()


def test_the_connection_settings_reach_every_client():
    operator = make_operator(**airflow_fixtures.CLIENT_SETTINGS)
    airflow_fixtures.assert_client_settings_reached(operator.hook.conn, "lambda")
    airflow_fixtures.assert_client_settings_reached(operator.s3_hook.conn, "s3")
    airflow_fixtures.assert_client_settings_reached(operator.sagemaker_hook.conn, "sagemaker")


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
