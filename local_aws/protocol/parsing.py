"""A request's wire form -> one dict shaped like the operation's input shape.

Whatever the protocol, a handler gets a plain dict keyed by member names: timestamps as
aware datetimes, blobs as bytes, numbers and booleans as such. ``json`` takes the members
from the JSON body; ``rest-json`` from the URI labels, the query string, the headers and the
body (the ``payload`` member as raw bytes, or the remaining members as JSON). Members the
model does not know are dropped. A value that cannot be converted is left as it came, for
validation to report against its member; a body that is not JSON, or bad base64, is a
:class:`MalformedRequest`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import json
from collections.abc import Mapping
from typing import Any

from botocore.model import OperationModel, Shape
from werkzeug.datastructures import Headers, MultiDict


class MalformedRequest(Exception):
    """The request cannot be read at all (its API decides the error code)."""


def parse_json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except ValueError as error:
        raise MalformedRequest(f"Could not parse request body into json: {error}") from error
    if not isinstance(document, dict):
        raise MalformedRequest("Could not parse request body into json: the body is not a JSON object")
    return document


def parse_json_request(operation: OperationModel, body: bytes) -> dict[str, Any]:
    shape = operation.input_shape
    if shape is None:
        return {}
    return from_json(shape, parse_json_body(body))


def parse_rest_request(
    operation: OperationModel, labels: Mapping[str, str], query: MultiDict, headers: Headers, body: bytes
) -> dict[str, Any]:
    shape = operation.input_shape
    if shape is None:
        return {}
    params: dict[str, Any] = {}
    payload_name = shape.serialization.get("payload")
    body_members = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", name)
        if location == "uri":
            if wire_name in labels:
                params[name] = from_text(member, labels[wire_name])
        elif location == "querystring":
            if member.type_name == "list" and wire_name in query:
                params[name] = [from_text(member.member, text) for text in query.getlist(wire_name)]
            elif wire_name in query:
                params[name] = from_text(member, query[wire_name])
        elif location == "header":
            if wire_name in headers:
                params[name] = from_header(member, headers[wire_name])
        elif name == payload_name:
            if member.type_name in ("blob", "string"):  # HTTP cannot tell an empty body from none
                params[name] = body if member.type_name == "blob" else body.decode("utf-8", "replace")
            else:
                params[name] = from_json(member, parse_json_body(body))
        elif location is None:
            body_members[name] = member
    if body_members and payload_name is None:
        document = parse_json_body(body)
        for name, member in body_members.items():
            if name in document:
                params[name] = from_json(member, document[name])
    return params


def from_json(shape: Shape, value: Any) -> Any:
    """A JSON value converted to what ``shape`` describes (timestamps, blobs, nested shapes)."""
    if value is None or shape.metadata.get("document"):
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        members = shape.members  # type: ignore[attr-defined]
        return {name: from_json(members[name], item) for name, item in value.items() if name in members}
    if kind == "list" and isinstance(value, list):
        return [from_json(shape.member, item) for item in value]  # type: ignore[attr-defined]
    if kind == "map" and isinstance(value, dict):
        return {key: from_json(shape.value, item) for key, item in value.items()}  # type: ignore[attr-defined]
    if kind == "timestamp":
        return _timestamp(value)
    if kind == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as error:
            raise MalformedRequest(f"{shape.name} is not valid base64: {error}") from error
    return value


def from_text(shape: Shape, text: str) -> Any:
    """A URI label or query value converted to ``shape``'s type (left as text if it is not one)."""
    kind = shape.type_name
    if kind in ("integer", "long"):
        try:
            return int(text)
        except ValueError:
            return text
    if kind in ("float", "double"):
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower(), text)
    if kind == "timestamp":
        return _timestamp(text)
    return text


def from_header(shape: Shape, text: str) -> Any:
    if shape.serialization.get("jsonvalue"):
        try:
            return json.loads(base64.b64decode(text))
        except (binascii.Error, ValueError) as error:
            raise MalformedRequest(f"{shape.name} is not base64-encoded JSON") from error
    if shape.type_name == "timestamp":
        try:
            return email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return _timestamp(text)
    return from_text(shape, text)


def _timestamp(value: Any) -> Any:
    """Epoch seconds (what botocore sends) or ISO 8601 -> aware UTC datetime; else unchanged."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        try:
            return dt.datetime.fromtimestamp(float(value), dt.UTC)
        except ValueError:
            pass
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return value
