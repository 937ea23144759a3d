"""What every local_aws service shares: errors, JSON encoding, routes, the context.

A service is an object with any of:

* ``sagemaker_actions() -> dict[str, Callable[[dict], dict]]``: SageMaker
  control-plane actions (AWS JSON 1.1, ``X-Amz-Target: SageMaker.<Action>``);
  the callable takes the request dict and returns the response dict
  (``datetime`` values are encoded as epoch seconds, as AWS does).
* ``routes() -> list[Route]``: REST routes (Lambda, SageMaker Runtime),
  matched on the signing service, the method and a path regex.
* ``shutdown() -> None``: stop processes and threads it started.

Handlers raise :class:`AwsError` for anything the caller did wrong; the server
turns it into the wire shape of the protocol the request came in with.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from local_aws.infra import s3
from local_aws.infra.cloudwatch_logs import LogShipper

ACCOUNT_ID = "123456789012"  # moto's default account, so ARNs agree across services


class AwsError(Exception):
    """An AWS-shaped client or server error."""

    def __init__(self, code: str, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}


def validation_error(message: str) -> AwsError:
    return AwsError("ValidationException", message)


def not_found(kind: str, name: str) -> AwsError:
    # SageMaker answers a missing resource with ValidationException "Could not find ...";
    # the provider's operators match on that text.
    return AwsError("ValidationException", f"Could not find {kind} '{name}'.")


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(payload: Any) -> bytes:
    return json.dumps(payload, default=_default).encode()


def json_response(payload: Any, status: int = 200, content_type: str = "application/json") -> Response:
    return Response(to_json(payload), status=status, content_type=content_type)


def rest_error_response(error: AwsError) -> Response:
    """REST-JSON error shape (Lambda, SageMaker Runtime): code in x-amzn-ErrorType, message in body."""
    body = {"Type": "User" if error.status < 500 else "Service", "message": error.message}
    headers = {"x-amzn-ErrorType": error.code, **error.headers}
    return Response(to_json(body), status=error.status, content_type="application/json", headers=headers)


def json_protocol_error_response(error: AwsError) -> Response:
    """AWS JSON 1.1 error shape (SageMaker control plane): ``__type`` and ``message``."""
    body = {"__type": error.code, "message": error.message}
    return Response(to_json(body), status=error.status, content_type="application/x-amz-json-1.1")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def constraint_error(value: Any, member: str, constraint: str) -> AwsError:
    """AWS's wording for a request member that breaks its service-model constraint."""
    return validation_error(
        f"1 validation error detected: Value '{value}' at '{member}' "
        f"failed to satisfy constraint: {constraint}"
    )


def as_datetime(value: Any) -> dt.datetime:
    """A request timestamp: boto3 sends epoch seconds; ISO strings are accepted too."""
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError as error:
        raise validation_error(f"Not a timestamp: {value!r}") from error


def list_page(
    request: dict[str, Any],
    items: list[Any],
    *,
    name: Callable[[Any], str],
    times: dict[str, Callable[[Any], dt.datetime]],
    sort_keys: dict[str, Callable[[Any], Any]],
    status: Callable[[Any], str] | None = None,
    default_max: int = 10,
) -> tuple[list[Any], dict[str, str]]:
    """SageMaker List* semantics, shared by every kind of resource: NameContains (any case),
    StatusEquals, ``<Field>Before``/``<Field>After`` for each of ``times``, SortBy, SortOrder,
    MaxResults and NextToken. Returns the page and ``{"NextToken": ...}`` when more follow."""
    if contains := request.get("NameContains"):
        items = [item for item in items if contains.lower() in name(item).lower()]
    if status is not None and (wanted := request.get("StatusEquals")):
        items = [item for item in items if status(item) == wanted]
    for field_name, timestamp in times.items():
        if (before := request.get(f"{field_name}Before")) is not None:
            bound = as_datetime(before)
            items = [item for item in items if timestamp(item) < bound]
        if (after := request.get(f"{field_name}After")) is not None:
            bound = as_datetime(after)
            items = [item for item in items if timestamp(item) > bound]
    sort_by = request.get("SortBy", "CreationTime")
    if sort_by not in sort_keys:
        raise constraint_error(
            sort_by, "sortBy", f"Member must satisfy enum value set: [{', '.join(sort_keys)}]"
        )
    order = request.get("SortOrder", "Descending")
    if order not in ("Ascending", "Descending"):
        raise constraint_error(
            order, "sortOrder", "Member must satisfy enum value set: [Ascending, Descending]"
        )
    items = sorted(items, key=sort_keys[sort_by], reverse=order == "Descending")
    limit = request.get("MaxResults", default_max)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise constraint_error(limit, "maxResults", "Member must have value between 1 and 100")
    token = str(request.get("NextToken") or "0")
    if not token.isdigit():
        raise validation_error("Invalid pagination token.")
    start = int(token)
    page = items[start : start + limit]
    more = start + len(page) < len(items)
    return page, ({"NextToken": str(start + len(page))} if more else {})


@dataclass(frozen=True)
class Route:
    """A REST route: requests signed for ``service`` with ``method`` whose path matches ``pattern``."""

    service: str
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Response]

    @classmethod
    def of(cls, service: str, method: str, pattern: str, handler: Callable[..., Response]) -> Route:
        return cls(service, method, re.compile(pattern + r"/?$"), handler)

    def match(self, service: str, request: Request) -> dict[str, str] | None:
        if service != self.service or request.method != self.method:
            return None
        found = self.pattern.match(request.path)
        return found.groupdict() if found else None


class TagStore:
    """SageMaker tags by resource ARN (AddTags, ListTags, DeleteTags)."""

    def __init__(self) -> None:
        self._tags: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def add(self, arn: str, tags: list[dict[str, str]] | None) -> None:
        with self._lock:
            self._tags.setdefault(arn, {}).update({t["Key"]: t["Value"] for t in tags or []})

    def get(self, arn: str) -> list[dict[str, str]]:
        with self._lock:
            return [{"Key": k, "Value": v} for k, v in self._tags.get(arn, {}).items()]

    def delete(self, arn: str, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._tags.get(arn, {}).pop(key, None)

    def forget(self, arn: str) -> None:
        with self._lock:
            self._tags.pop(arn, None)


@dataclass
class Context:
    """What services share: where state lives, how to call back into this server, each other."""

    state_dir: Path
    endpoint_url: str
    region: str = "us-east-1"
    account_id: str = ACCOUNT_ID
    tags: TagStore = field(default_factory=TagStore)
    services: dict[str, Any] = field(default_factory=dict)
    logs: LogShipper = field(init=False)  # CloudWatch Logs for every process the services run

    def __post_init__(self) -> None:
        self.logs = LogShipper(lambda: self.client("logs"))

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client for this very server (S3, Logs, ... are served by moto in-process)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=region or self.region,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - the stand-in accepts any credentials
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def worker_environment(self) -> dict[str, str]:
        """Environment for processes we start (training, model servers, Lambda workers) so their
        boto3 calls come back here instead of going to AWS."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        }


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of a request's S3 URI; anything else is the caller's mistake."""
    try:
        return s3.split_s3_uri(uri)
    except ValueError as error:
        raise validation_error(str(error)) from error
