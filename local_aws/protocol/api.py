"""How a service declares what it serves: the API (a botocore model) and its operations.

An :class:`Api` names a botocore service model and the few things the model leaves open
(which error codes the API uses for a broken request or an internal failure, how large a
request its front end accepts). A service's methods become operations with
:func:`operation`; each takes the parsed, validated request dict and returns the result
dict (or None for an empty result, or a :class:`Reply` when the answer carries headers the
model does not describe)::

    class TrainingService(Service):
        api = SAGEMAKER

        @operation("DescribeTrainingJob")
        def describe_training_job(self, request: dict) -> dict: ...

An API moto keeps (Application Auto Scaling, say) can be extended the same way: declared with
``moto_serves_the_rest=True``, the operations its services mark are ours and every other one
goes to moto untouched. A handler reaches moto's own answer through ``context.moto``
(:mod:`local_aws.protocol.moto_calls`), to store the resource there and add what moto lacks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import botocore.session
from botocore.model import ServiceModel

from local_aws.protocol.errors import AwsError

Handler = Callable[[dict[str, Any]], "dict[str, Any] | Reply | None"]
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024


def _too_large(operation: str, limit: int) -> AwsError:
    return AwsError(None, f"Request must be smaller than {limit} bytes for the {operation} operation", 413)


@dataclass(frozen=True)
class Api:
    """An AWS API that local_aws serves itself."""

    name: str  # the botocore service name: "sagemaker", "sagemaker-runtime", "lambda"
    validation_error: str = "ValidationException"  # a request that breaks its input shape
    malformed_request: str = "SerializationException"  # a body that is not JSON, bad base64
    internal_error: str = "InternalFailure"  # a bug in local_aws (always a 500)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # the front end refuses more, unread
    request_too_large: Callable[[str, int], AwsError] = field(default=_too_large)  # (operation, limit)
    # moto keeps this API: operations no service of ours marks go to moto instead of a 501.
    moto_serves_the_rest: bool = False


@dataclass(frozen=True)
class Reply:
    """A result plus response headers outside the model (local_aws's own, for tests and diagnostics)."""

    result: dict[str, Any]
    headers: dict[str, str]


def operation(name: str) -> Callable[[F], F]:
    """Mark a method as the handler of the API operation ``name``."""

    def mark(function: F) -> F:
        function.aws_operation = name  # type: ignore[attr-defined]
        return function

    return mark


def handlers_of(obj: object) -> dict[str, Handler]:
    """The operations ``obj``'s methods are marked with, as bound methods."""
    found: dict[str, Handler] = {}
    for attribute in dir(type(obj)):
        name = getattr(getattr(type(obj), attribute, None), "aws_operation", None)
        if name is not None:
            found[name] = getattr(obj, attribute)
    return found


@functools.cache
def service_model(name: str) -> ServiceModel:
    """The botocore service model of ``name`` (botocore's data in this venv is the spec)."""
    return _session().get_service_model(name)


@functools.cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()
