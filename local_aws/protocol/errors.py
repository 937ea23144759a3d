"""Errors in AWS's terms, and the one place that turns them into each protocol's wire shape.

A handler raises :class:`AwsError` for anything the caller did wrong (or a state the caller
must react to); the dispatcher renders it as the API's protocol does, taking the HTTP status
and the names of the body members from the error's shape in the botocore model:

* ``json`` (SageMaker): ``{"__type": code, "message": ...}`` and the ``x-amzn-ErrorType`` header.
* ``rest-json`` (Lambda, SageMaker Runtime): the code in ``x-amzn-ErrorType``; the body holds
  the message under the shape's own member name (``message`` or ``Message``), Lambda's
  ``Type`` (User or Service) where the shape has one, and the error's other members
  (ModelError's ``OriginalStatusCode``...), header-bound members as headers.

Any other exception inside a handler is a bug in local_aws: a 500 with the API's internal
error code, never dressed up as the caller's mistake.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from botocore.model import ServiceModel, StructureShape
from werkzeug.wrappers import Response


class AwsError(Exception):
    """An AWS error: ``code`` as the SDKs match on it, a message, and the error shape's other
    members in ``fields``. ``status`` None means the one the API's model gives the code (400
    if the model has no such error). ``code`` None is a bare HTTP refusal from AWS's front
    end (no error code on the wire; botocore then reports the status as the code)."""

    def __init__(
        self, code: str | None, message: str, status: int | None = None, fields: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.fields = fields or {}


def validation_error(message: str) -> AwsError:
    """SageMaker's and Lambda's code for a request that breaks a rule of the API."""
    return AwsError("ValidationException", message)


def request_id() -> str:
    return str(uuid.uuid4())


def error_response(model: ServiceModel, error: AwsError) -> Response:
    """``error`` as the protocol of ``model`` puts it on the wire."""
    shape = _error_shape(model, error.code)
    status = error.status or _modeled_status(shape) or 400
    headers = {"x-amzn-RequestId": request_id()}
    if error.code is not None:
        headers["x-amzn-ErrorType"] = error.code
    if model.resolved_protocol == "json":
        body: dict[str, Any] = {"__type": error.code, "message": error.message, **error.fields}
        content_type = f"application/x-amz-json-{model.metadata.get('jsonVersion', '1.1')}"
    else:
        body = _rest_error_body(model, shape, error, status, headers)
        content_type = "application/json"
    return Response(json.dumps(body, default=str), status=status, content_type=content_type, headers=headers)


def _rest_error_body(
    model: ServiceModel, shape: StructureShape | None, error: AwsError, status: int, headers: dict[str, str]
) -> dict[str, Any]:
    # Codes the model does not list (front-end errors, ours) take the shape of the API's own errors.
    template = shape or _error_shape(model, "ServiceException") or _error_shape(model, "InternalFailure")
    members = template.members if template is not None else {}
    message_key = next((name for name in members if name.lower() == "message"), "message")
    body: dict[str, Any] = {message_key: error.message}
    if "Type" in members:
        body["Type"] = "User" if status < 500 else "Service"
    for name, value in error.fields.items():
        member = members.get(name)
        if member is not None and member.serialization.get("location") == "header":
            headers[member.serialization.get("name", name)] = str(value)
        else:
            body[name] = value
    return body


def _error_shape(model: ServiceModel, code: str | None) -> StructureShape | None:
    if code is None:
        return None
    return next((shape for shape in model.error_shapes if shape.name == code), None)


def _modeled_status(shape: StructureShape | None) -> int | None:
    if shape is None:
        return None
    return (shape.metadata.get("error") or {}).get("httpStatusCode")
