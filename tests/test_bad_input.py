"""Malformed requests get a 4xx with a message, through the Lambda and straight at the endpoint,
and the endpoint keeps answering good images from the same model-server processes."""

from __future__ import annotations

import base64
import json

import pytest
from bad_input_corpus import LambdaCase, endpoint_cases, good_jpeg, lambda_cases
from botocore.exceptions import ClientError
from served_model import ServedModel, invoke_lambda

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

LAMBDA_CASES = lambda_cases()
ENDPOINT_CASES = endpoint_cases()


@pytest.fixture(scope="module")
def served(read_only_chain) -> ServedModel:
    return read_only_chain


@pytest.fixture(scope="module")
def pids_before(served) -> set[int]:
    pids = served.model_server_pids()
    assert pids, "no model-server process found behind the endpoint"
    return pids


def error_message(body: object) -> str:
    """The human-readable message of an error response body (JSON object with error/message)."""
    document = json.loads(body) if isinstance(body, str) else body
    assert isinstance(document, dict), f"error body is not a JSON object: {body!r:.200}"
    message = document.get("error") or document.get("message")
    assert isinstance(message, str) and len(message.split()) >= 2, f"no clear message in {document!r:.300}"
    return message


def assert_good_answer(served: ServedModel) -> dict:
    event = {"image": base64.b64encode(good_jpeg(seed=3)).decode(), "content_type": "image/jpeg", "top_k": 2}
    status, response, function_error = invoke_lambda(served, event)
    assert (status, function_error) == (200, None), response
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"]) if isinstance(response["body"], str) else response["body"]
    predictions = body["predictions"]
    assert len(predictions) == 2
    classes = json.loads((served.model_dir / "model_config.json").read_text())["classes"]
    assert {p["class_folder"] for p in predictions} <= set(classes)
    assert predictions[0]["probability"] >= predictions[1]["probability"]
    return body


def test_corpus_is_big_enough():
    assert len(LAMBDA_CASES) >= 40
    assert len({case.name for case in LAMBDA_CASES}) == len(LAMBDA_CASES)


def test_good_image_answers_before(served, pids_before):
    assert_good_answer(served)


@pytest.mark.parametrize("case", LAMBDA_CASES, ids=lambda case: case.name)
def test_lambda_answers_bad_input_with_a_4xx_and_a_message(served, pids_before, case: LambdaCase):
    status, response, function_error = invoke_lambda(served, case.event)
    if response is None:
        # Refused by Lambda itself before the handler ran (e.g. a payload over 6 MB).
        assert 400 <= status < 500, f"Invoke answered {status} {function_error}"
        return
    assert function_error is None, f"the handler raised instead of answering: {response!r:.500}"
    assert isinstance(response, dict), response
    assert 400 <= response.get("statusCode", 0) < 500, f"{response!r:.500}"
    error_message(response.get("body"))


@pytest.mark.parametrize("case", ENDPOINT_CASES, ids=lambda case: case.name)
def test_endpoint_answers_bad_input_with_the_original_4xx(served, pids_before, case):
    runtime = served.client("sagemaker-runtime")
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(
            EndpointName=served.endpoint_name, ContentType=case.content_type, Body=case.body
        )
    error = caught.value.response
    status = error["ResponseMetadata"]["HTTPStatusCode"]
    if error["Error"]["Code"] == "ModelError":
        # The container's own answer is carried in OriginalStatusCode / OriginalMessage.
        assert 400 <= error.get("OriginalStatusCode", 0) < 500, error
        assert len(error.get("OriginalMessage", "").split()) >= 2, error
    else:
        # Refused by the runtime before it reached the container (payload over 6 MB).
        assert 400 <= status < 500, error


def test_endpoint_still_answers_from_the_same_processes_afterwards(served, pids_before):
    assert_good_answer(served)
    assert served.model_server_pids() == pids_before
    description = served.client("sagemaker").describe_endpoint(EndpointName=served.endpoint_name)
    assert description["EndpointStatus"] == "InService"
