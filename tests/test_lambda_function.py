"""lambda_function.py: event shapes, validation before any endpoint call, endpoint error mapping."""

from __future__ import annotations

import base64
import io
import json

import boto3
import lambda_function
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber

ENDPOINT = "dog-breed-endpoint"
IMAGE = b"\xff\xd8\xff\xe0fake-jpeg-bytes"
IMAGE_B64 = base64.b64encode(IMAGE).decode()
PNG = b"\x89PNG\r\n\x1a\nfake-png-bytes"
PNG_B64 = base64.b64encode(PNG).decode()
GIF_B64 = base64.b64encode(b"GIF89a\x10\x00\x10\x00fake-gif-bytes").decode()
SIX_MB = 6 * 1024 * 1024
ANSWER = {"predictions": [{"breed": "Akita", "class_folder": "004.Akita", "index": 3, "probability": 0.9}]}


@pytest.fixture
def runtime(monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    client = boto3.client(
        "sagemaker-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    monkeypatch.setattr(lambda_function, "_runtime_client", client)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expect_call(stubber: Stubber, body: bytes, content_type: str, answer: dict = ANSWER) -> None:
    encoded = json.dumps(answer).encode()
    stubber.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(encoded), len(encoded)), "ContentType": "application/json"},
        {"EndpointName": ENDPOINT, "ContentType": content_type, "Accept": "application/json", "Body": body},
    )


def call(event) -> tuple[int, dict]:
    response = lambda_function.lambda_handler(event, None)
    assert response["headers"] == {"Content-Type": "application/json"}
    return response["statusCode"], json.loads(response["body"])


def test_direct_event_sends_the_raw_image(runtime):
    expect_call(runtime, IMAGE, "image/jpeg")
    status, body = call({"image": IMAGE_B64})
    assert status == 200
    assert body["predictions"] == ANSWER["predictions"] and body["latency_ms"] >= 0


def test_direct_event_with_top_k_sends_json(runtime):
    expected = json.dumps({"image": PNG_B64, "top_k": 3}).encode()
    expect_call(runtime, expected, "application/json")
    status, _ = call({"image": PNG_B64, "content_type": "image/png", "top_k": 3})
    assert status == 200


def test_api_gateway_base64_image_body(runtime):
    expect_call(runtime, PNG, "image/png")
    event = {"body": PNG_B64, "isBase64Encoded": True, "headers": {"content-type": "image/png"}}
    assert call(event)[0] == 200


@pytest.mark.parametrize("image", [IMAGE, PNG], ids=["jpeg", "png"])
def test_application_x_image_takes_either_signature(runtime, image):
    expect_call(runtime, image, "application/x-image")
    event = {"image": base64.b64encode(image).decode(), "content_type": "application/x-image"}
    assert call(event)[0] == 200


def test_api_gateway_top_k_query_parameter(runtime):
    expect_call(runtime, json.dumps({"image": IMAGE_B64, "top_k": 2}).encode(), "application/json")
    event = {
        "body": IMAGE_B64,
        "isBase64Encoded": True,
        "headers": {"Content-Type": "image/jpeg"},
        "queryStringParameters": {"top_k": "2"},
    }
    assert call(event)[0] == 200


@pytest.mark.parametrize("base64_encoded", [False, True])
def test_api_gateway_json_body(runtime, base64_encoded):
    expect_call(runtime, IMAGE, "image/jpeg")
    text = json.dumps({"image": IMAGE_B64, "content_type": "image/jpeg"})
    body = base64.b64encode(text.encode()).decode() if base64_encoded else text
    event = {"body": body, "isBase64Encoded": base64_encoded, "headers": {"Content-Type": "application/json"}}
    assert call(event)[0] == 200


BAD_EVENTS = {
    "not an object": ["image"],
    "no image": {"content_type": "image/jpeg"},
    "image not a string": {"image": 42},
    "bad base64": {"image": "not*base64"},
    "empty image": {"image": ""},
    "unsupported content type": {"image": IMAGE_B64, "content_type": "text/plain"},
    "top_k zero": {"image": IMAGE_B64, "top_k": 0},
    "top_k too big": {"image": IMAGE_B64, "top_k": 21},
    "top_k bool": {"image": IMAGE_B64, "top_k": True},
    "top_k float": {"image": IMAGE_B64, "top_k": 2.5},
    "png labelled jpeg": {"image": PNG_B64, "content_type": "image/jpeg"},
    "jpeg labelled png": {"image": IMAGE_B64, "content_type": "image/png"},
    "png without a content type (jpeg by default)": {"image": PNG_B64},
    "gif as x-image": {"image": GIF_B64, "content_type": "application/x-image"},
    "text as jpeg": {"image": base64.b64encode(b"a dog, in words").decode()},
    "one byte of the jpeg signature": {"image": base64.b64encode(b"\xff").decode()},
    "proxy png labelled jpeg": {
        "body": PNG_B64,
        "isBase64Encoded": True,
        "headers": {"Content-Type": "image/jpeg"},
    },
    "proxy empty body": {"body": "", "headers": {"Content-Type": "image/jpeg"}},
    "proxy null body": {"body": None},
    "proxy binary not base64": {"body": "rawbytes", "headers": {"Content-Type": "image/jpeg"}},
    "proxy invalid json": {"body": "{oops", "headers": {"Content-Type": "application/json"}},
    "proxy json not object": {"body": "[]", "headers": {"Content-Type": "application/json"}},
    "proxy bad base64": {"body": "%%%", "isBase64Encoded": True, "headers": {"Content-Type": "image/png"}},
    "proxy bad top_k": {
        "body": IMAGE_B64,
        "isBase64Encoded": True,
        "headers": {"Content-Type": "image/png"},
        "queryStringParameters": {"top_k": "many"},
    },
}


@pytest.mark.parametrize("event", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_malformed_events_are_400_without_calling_the_endpoint(runtime, event):
    status, body = call(event)  # the Stubber has no responses queued: any call would fail the test
    assert status == 400
    assert isinstance(body["error"], str) and len(body["error"].split()) >= 2


def test_a_signature_mismatch_says_what_the_bytes_are(runtime):
    status, body = call({"image": PNG_B64, "content_type": "image/jpeg"})
    assert status == 400
    assert "not a JPEG" in body["error"] and "89 50 4e 47" in body["error"], body


OVER_6_MB = {
    "direct": {"image": base64.b64encode(b"\xff\xd8\xff" + b"\0" * SIX_MB).decode()},
    "proxy": {
        "body": base64.b64encode(b"\xff\xd8\xff" + b"\0" * SIX_MB).decode(),
        "isBase64Encoded": True,
        "headers": {"Content-Type": "image/jpeg"},
    },
    "many small fields": {"image": IMAGE_B64, "padding": ["x" * 1000] * (SIX_MB // 1000)},
}


@pytest.mark.parametrize("event", OVER_6_MB.values(), ids=OVER_6_MB.keys())
def test_an_event_over_lambdas_6_mb_limit_is_413_without_calling_the_endpoint(runtime, event):
    status, body = call(event)
    assert status == 413
    assert "6291456" in body["error"] and "payload limit" in body["error"], body


def test_an_event_just_under_the_limit_goes_through(runtime):
    # Compact JSON of {"image":"<b64>"} is 12 bytes of wrapper around the base64 text.
    image = b"\xff\xd8\xff" + b"\0" * ((SIX_MB - 12) // 4 * 3 - 3)
    event = {"image": base64.b64encode(image).decode()}
    assert len(json.dumps(event, separators=(",", ":"))) <= SIX_MB
    expect_call(runtime, image, "image/jpeg")
    assert call(event)[0] == 200


def test_container_4xx_passes_through(runtime):
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received client error (400) from primary",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 400, "OriginalMessage": "cannot decode image: truncated"},
    )
    assert call({"image": IMAGE_B64}) == (400, {"error": "cannot decode image: truncated"})


def test_container_5xx_is_502(runtime):
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received server error (500) from primary",
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 500, "OriginalMessage": "CUDA out of memory"},
    )
    status, body = call({"image": IMAGE_B64})
    assert status == 502 and "CUDA out of memory" in body["error"]


def test_other_endpoint_errors_are_502_with_the_reason(runtime):
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ValidationError",
        service_message=f"Endpoint {ENDPOINT} of account 123 not found.",
        http_status_code=400,
    )
    status, body = call({"image": IMAGE_B64})
    assert status == 502 and "not found" in body["error"]


def test_non_json_answer_is_502(runtime):
    runtime.add_response(
        "invoke_endpoint", {"Body": StreamingBody(io.BytesIO(b"<html>"), 6), "ContentType": "text/html"}
    )
    assert call({"image": IMAGE_B64})[0] == 502


def test_timeout_is_502(monkeypatch):
    class TimingOut:
        def invoke_endpoint(self, **kwargs):
            raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker/endpoints/x/invocations")

    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setattr(lambda_function, "_runtime_client", TimingOut())
    status, body = call({"image": IMAGE_B64})
    assert status == 502 and "timeout" in body["error"].lower()


def test_missing_endpoint_name_is_reported(monkeypatch):
    monkeypatch.delenv("ENDPOINT_NAME", raising=False)
    status, body = call({"image": IMAGE_B64})
    assert status == 500 and "ENDPOINT_NAME" in body["error"]


def test_client_is_created_once(monkeypatch):
    monkeypatch.setattr(lambda_function, "_runtime_client", None)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    first = lambda_function.runtime_client()
    assert first is lambda_function.runtime_client()
    assert first.meta.endpoint_url == "http://127.0.0.1:4566"


def test_a_configured_function_builds_its_client_in_the_init_phase():
    """Provisioned concurrency runs the init phase ahead of requests; the client belongs there."""
    import os
    import subprocess
    import sys

    probe = "import lambda_function; print(lambda_function._runtime_client is not None)"
    base = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": os.path.dirname(lambda_function.__file__),
    }
    base.pop("ENDPOINT_NAME", None)
    for extra, built in (({"ENDPOINT_NAME": "dog-breed-classifier"}, "True"), ({}, "False")):
        completed = subprocess.run(
            [sys.executable, "-c", probe], env={**base, **extra}, capture_output=True, text=True, check=True
        )
        assert completed.stdout.split() == [built], completed.stderr


def test_the_deliberate_copies_match_the_serving_contract():
    """The zip holds lambda_function.py alone, so it copies these; the copies must not drift."""
    import serving_contract

    assert lambda_function.IMAGE_CONTENT_TYPES == serving_contract.IMAGE_CONTENT_TYPES
    assert lambda_function.MAX_TOP_K == serving_contract.MAX_TOP_K
    assert lambda_function.LATENCY_FIELD == serving_contract.LATENCY_FIELD


def test_a_good_answer_leaves_with_the_latency_the_contract_names(runtime):
    import serving_contract

    answer = serving_contract.response(
        [
            serving_contract.prediction("004.Akita", 3, 0.9),
            serving_contract.prediction("001.Affenpinscher", 0, 0.1),
        ],
        top_k=2,
        runtime="onnx-int8",
    )
    expect_call(runtime, IMAGE, "image/jpeg", answer)
    status, body = call({"image": IMAGE_B64})
    assert status == 200
    problems = serving_contract.response_problems(
        body, classes={"004.Akita", "001.Affenpinscher"}, top_k=2, with_latency=True
    )
    assert problems == []
