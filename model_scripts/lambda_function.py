"""Lambda front for the dog-breed endpoint.

Events:
- direct: ``{"image": "<base64>", "content_type": "image/jpeg", "top_k": 3}``
  (``content_type`` defaults to image/jpeg, ``top_k`` to the endpoint's 5);
- API Gateway proxy: ``body`` is the base64 image (``isBase64Encoded``) with
  its ``Content-Type`` header (``top_k`` may come as a query parameter), or a
  JSON body with the direct event's fields.

The endpoint is ``ENDPOINT_NAME``. Bad events get a 400 without calling the
endpoint, among them an image whose leading bytes are not the JPEG or PNG
signature its content type names (``application/x-image``: either); an event
over Lambda's 6 MB synchronous payload limit is a 413. The container's own
4xx answers pass through; everything else that goes wrong upstream is a 502
with the reason. The handler never raises.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger()
logger.setLevel(logging.INFO)

# Copies of serving_contract's (the zip holds this one file); tests/test_lambda_function.py pins them.
IMAGE_CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "application/x-image"})
MAX_TOP_K = 20
LATENCY_FIELD = "latency_ms"
DEFAULT_CONTENT_TYPE = "image/jpeg"
# Lambda's synchronous invocation payload limit (AWS refuses a bigger Invoke before the
# handler runs; checked here too, so any other way in gets the same answer).
MAX_EVENT_BYTES = 6 * 1024 * 1024
# InvokeEndpoint takes at most 6 MB; keep room for the JSON wrapper when top_k is sent.
MAX_ENDPOINT_BODY_BYTES = 6 * 1024 * 1024 - 1024
JSON_HEADERS = {"Content-Type": "application/json"}
# The leading bytes each accepted format starts with; application/x-image is either.
JPEG_SIGNATURE = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIGNATURES = {
    "image/jpeg": {"JPEG": JPEG_SIGNATURE},
    "image/png": {"PNG": PNG_SIGNATURE},
    "application/x-image": {"JPEG": JPEG_SIGNATURE, "PNG": PNG_SIGNATURE},
}

_runtime_client: Any = None


class BadRequest(ValueError):
    """The event cannot be sent to the endpoint."""

    status = 400


class PayloadTooLarge(BadRequest):
    """The event, or the request it would make, is over a payload limit."""

    status = 413


@dataclass(frozen=True)
class EndpointRequest:
    body: bytes
    content_type: str


def runtime_client() -> Any:
    """One SageMaker Runtime client per container (created on first use; honours AWS_ENDPOINT_URL)."""
    global _runtime_client
    if _runtime_client is None:
        _runtime_client = boto3.client(
            "sagemaker-runtime",
            # The endpoint may take up to 60 s; fail fast on connect, retry throttling once.
            config=Config(connect_timeout=5, read_timeout=65, retries={"max_attempts": 2}),
        )
    return _runtime_client


def _response(status: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": dict(JSON_HEADERS), "body": json.dumps(payload)}


def _media_type(value: Any) -> str:
    return str(value).split(";", 1)[0].strip().lower()


def _header(headers: Any, name: str) -> str | None:
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if str(key).lower() == name.lower():
            return value
    return None


def _decode_base64(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise BadRequest(f"{what} must be a non-empty base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(f"{what} is not valid base64: {error}") from error


def _top_k(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise BadRequest(f"top_k must be an integer between 1 and {MAX_TOP_K}")
    return value


def _event_bytes(event: Any) -> int:
    """The fewest bytes the event's JSON document can take: if even that is over the limit,
    the payload Lambda received was (escapes or spaces only make it bigger)."""
    try:
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return 0  # not JSON (an in-process call): the checks below say what is wrong with it
    return len(text.encode("utf-8", errors="surrogatepass"))


def _check_signature(image: bytes, media_type: str) -> None:
    """The bytes must start as the content type says; a mislabelled or non-image body stops here."""
    formats = SIGNATURES[media_type]
    if not any(image.startswith(signature) for signature in formats.values()):
        expected = " or ".join(formats)
        raise BadRequest(
            f"the image is not a {expected} file (content type {media_type}): "
            f"it starts with bytes {image[:8].hex(' ')}"
        )


def _endpoint_request(image: bytes, content_type: Any, top_k: int | None) -> EndpointRequest:
    media_type = _media_type(content_type or DEFAULT_CONTENT_TYPE)
    if media_type not in IMAGE_CONTENT_TYPES:
        accepted = ", ".join(sorted(IMAGE_CONTENT_TYPES))
        raise BadRequest(f"content_type {content_type!r} is not one of {accepted}")
    if not image:
        raise BadRequest("image is empty")
    _check_signature(image, media_type)
    if top_k is None:
        request = EndpointRequest(image, media_type)  # raw bytes: no base64 overhead
    else:
        payload = {"image": base64.b64encode(image).decode("ascii"), "top_k": top_k}
        request = EndpointRequest(json.dumps(payload).encode("utf-8"), "application/json")
    if len(request.body) > MAX_ENDPOINT_BODY_BYTES:
        raise PayloadTooLarge(
            f"image of {len(image)} bytes makes a {len(request.body)}-byte request; "
            f"the endpoint accepts at most {MAX_ENDPOINT_BODY_BYTES}"
        )
    return request


def _from_fields(fields: Any) -> EndpointRequest:
    if not isinstance(fields, dict):
        raise BadRequest('expected a JSON object like {"image": "<base64>", "content_type": "image/jpeg"}')
    image = _decode_base64(fields.get("image"), '"image"')
    return _endpoint_request(image, fields.get("content_type"), _top_k(fields.get("top_k")))


def _from_proxy(event: dict[str, Any]) -> EndpointRequest:
    body = event.get("body")
    if not isinstance(body, str) or not body:
        raise BadRequest("request body is empty")
    content_type = _header(event.get("headers"), "content-type") or "application/json"
    media_type = _media_type(content_type)
    raw = _decode_base64(body, "body") if event.get("isBase64Encoded") else None
    if media_type == "application/json":
        try:
            text = raw.decode("utf-8", errors="strict") if raw is not None else body
            return _from_fields(json.loads(text))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BadRequest(f"body is not valid JSON: {error}") from error
    if raw is None:
        raise BadRequest(f"a {media_type} body must be sent base64-encoded (isBase64Encoded true)")
    query = event.get("queryStringParameters") or {}
    return _endpoint_request(raw, media_type, _top_k(query.get("top_k") if isinstance(query, dict) else None))


def parse_event(event: Any) -> EndpointRequest:
    size = _event_bytes(event)
    if size > MAX_EVENT_BYTES:
        raise PayloadTooLarge(
            f"the event is {size} bytes; Lambda's synchronous payload limit is {MAX_EVENT_BYTES} bytes"
        )
    if not isinstance(event, dict):
        raise BadRequest("event must be a JSON object")
    if "body" in event and "image" not in event:
        return _from_proxy(event)
    return _from_fields(event)


def _model_error_response(error: ClientError) -> dict[str, Any]:
    details = error.response
    status = details.get("OriginalStatusCode")
    message = details.get("OriginalMessage") or details.get("Error", {}).get("Message", "model error")
    if isinstance(status, int) and 400 <= status < 500:
        return _response(status, {"error": message})
    return _response(502, {"error": f"the model failed (status {status}): {message}"})


def invoke(endpoint_name: str, request: EndpointRequest) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        answer = runtime_client().invoke_endpoint(
            EndpointName=endpoint_name,
            ContentType=request.content_type,
            Accept="application/json",
            Body=request.body,
        )
        payload = json.loads(answer["Body"].read())
    except ClientError as error:
        logger.warning("InvokeEndpoint failed: %s", error)
        if error.response.get("Error", {}).get("Code") == "ModelError":
            return _model_error_response(error)
        return _response(502, {"error": f"endpoint call failed: {error}"})
    except BotoCoreError as error:  # timeouts, connection failures
        logger.warning("InvokeEndpoint failed: %s", error)
        return _response(502, {"error": f"endpoint unreachable: {error}"})
    except (ValueError, UnicodeDecodeError) as error:
        return _response(502, {"error": f"endpoint answered with invalid JSON: {error}"})
    if not isinstance(payload, dict):
        return _response(502, {"error": "endpoint answered with JSON that is not an object"})
    payload[LATENCY_FIELD] = round((time.perf_counter() - started) * 1000, 1)
    return _response(200, payload)


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        request = parse_event(event)
        endpoint_name = os.environ.get("ENDPOINT_NAME")
        if not endpoint_name:
            return _response(500, {"error": "ENDPOINT_NAME is not configured"})
        return invoke(endpoint_name, request)
    except BadRequest as error:
        return _response(error.status, {"error": str(error)})
    except Exception as error:  # the contract is "never raises": report, don't crash the invocation
        logger.exception("unexpected failure")
        return _response(500, {"error": f"internal error: {type(error).__name__}: {error}"})


# Lambda runs module code in the init phase, before the first request (with provisioned
# concurrency, before any request is routed here): a configured function builds its client
# now, as AWS advises, so no request pays the ~40 ms that takes.
if os.environ.get("ENDPOINT_NAME"):
    runtime_client()
