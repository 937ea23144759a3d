"""A handler's result dict -> the operation's response on the wire, as its output shape says.

* status: the member bound to ``statusCode`` if the result has one, else ``http.responseCode``
  (200 when the model gives none); a 204 has no body.
* ``rest-json``: header-bound members become headers; the ``payload`` member is the body
  (a blob as raw bytes), else the remaining members are the JSON body. Content-Type comes
  from a ``Content-Type`` header member when there is one.
* timestamps as the shape or protocol formats them (epoch seconds in JSON bodies, RFC 822
  in headers), blobs in JSON as base64.

Members the output shape does not have are dropped with a warning: an SDK would drop them
too, and the warning shows the handler drifting from the model.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import logging
from typing import Any

from botocore.model import OperationModel, Shape
from werkzeug.wrappers import Response

from local_aws.protocol.errors import request_id

log = logging.getLogger("local_aws.protocol")


def json_response(model_json_version: str, operation: OperationModel, result: dict[str, Any]) -> Response:
    shape = operation.output_shape
    body = to_json(shape, result, operation.name) if shape is not None else {}
    return Response(
        json.dumps(body),
        status=operation.http.get("responseCode", 200),
        content_type=f"application/x-amz-json-{model_json_version}",
        headers={"x-amzn-RequestId": request_id()},
    )


def rest_response(operation: OperationModel, result: dict[str, Any]) -> Response:
    shape = operation.output_shape
    status = operation.http.get("responseCode", 200)
    headers = {"x-amzn-RequestId": request_id()}
    content_type = "application/json"
    if shape is None:
        return Response(b"", status=status, headers=headers)
    _warn_unknown(shape, result, operation.name)
    payload_name = shape.serialization.get("payload")
    body_members: dict[str, Any] = {}
    body: bytes | None = None
    for name, member in shape.members.items():
        if name not in result or result[name] is None:
            continue
        value = result[name]
        location = member.serialization.get("location")
        if location == "statusCode":
            status = int(value)
        elif location == "header":
            text = header_value(member, value)
            if member.serialization.get("name", name).lower() == "content-type":
                content_type = text
            else:
                headers[member.serialization.get("name", name)] = text
        elif name == payload_name:
            if member.type_name == "blob":
                body = bytes(value)
            elif member.type_name == "string":
                body = str(value).encode()
            else:
                body = json.dumps(to_json(member, value, operation.name)).encode()
        elif location is None:
            body_members[name] = value
    if body is None and payload_name is None:
        body = json.dumps(to_json(shape, body_members, operation.name)).encode()
    if status in (204, 304):
        body = b""
    return Response(body or b"", status=status, content_type=content_type, headers=headers)


def to_json(shape: Shape, value: Any, operation: str) -> Any:
    """``value`` as JSON data for ``shape``: nested shapes walked, timestamps and blobs encoded."""
    if value is None or shape.metadata.get("document"):
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        _warn_unknown(shape, value, operation)
        members = shape.members  # type: ignore[attr-defined]
        return {
            name: to_json(members[name], item, operation)
            for name, item in value.items()
            if name in members and item is not None
        }
    if kind == "list" and isinstance(value, list | tuple):
        return [to_json(shape.member, item, operation) for item in value]  # type: ignore[attr-defined]
    if kind == "map" and isinstance(value, dict):
        return {key: to_json(shape.value, item, operation) for key, item in value.items()}  # type: ignore[attr-defined]
    if kind == "timestamp":
        return timestamp(value, shape.serialization.get("timestampFormat", "unixTimestamp"))
    if kind == "blob" and isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    return value


def header_value(shape: Shape, value: Any) -> str:
    if shape.serialization.get("jsonvalue"):
        return base64.b64encode(json.dumps(value).encode()).decode()
    if shape.type_name == "timestamp":
        return str(timestamp(value, shape.serialization.get("timestampFormat", "rfc822")))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def timestamp(value: Any, style: str) -> Any:
    if not isinstance(value, dt.datetime):
        return value
    moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if style == "iso8601":
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if style == "rfc822":
        return email.utils.format_datetime(moment.astimezone(dt.UTC), usegmt=True)
    return moment.timestamp()


def _warn_unknown(shape: Shape, value: dict[str, Any], operation: str) -> None:
    unknown = sorted(set(value) - set(shape.members))  # type: ignore[attr-defined]
    if unknown:
        log.warning("%s returned members %s lacks (dropped): %s", operation, shape.name, unknown)
