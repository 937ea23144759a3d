"""The Lambda API (REST JSON, 2015-03-31 and friends) and the errors Lambda answers with."""

from __future__ import annotations

from local_aws.protocol.api import Api
from local_aws.protocol.errors import AwsError

MAX_REQUEST_BYTES = 70167211  # CreateFunction / UpdateFunctionCode with an inline zip, as AWS words it


def request_entity_too_large(operation: str, limit: int) -> AwsError:
    # Lambda's front end refuses a bigger body before the service sees it, with this code.
    return AwsError(
        "RequestEntityTooLargeException",
        f"Request must be smaller than {limit} bytes for the {operation} operation",
        413,
    )


LAMBDA = Api(
    "lambda",
    malformed_request="InvalidRequestContentException",
    internal_error="ServiceException",
    max_request_bytes=MAX_REQUEST_BYTES,
    request_too_large=request_entity_too_large,
)


def invalid_parameter(message: str) -> AwsError:
    return AwsError("InvalidParameterValueException", message)


def function_not_found(arn: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"Function not found: {arn}")


def conflict(message: str) -> AwsError:
    return AwsError("ResourceConflictException", message)


def not_ready(state: str) -> AwsError:
    return conflict(
        "The operation cannot be performed at this time. "
        f"The function is currently in the following state: {state}"
    )


def update_in_progress(arn: str) -> AwsError:
    return conflict(
        f"The operation cannot be performed at this time. An update is in progress for resource: {arn}"
    )


def revision_mismatch() -> AwsError:
    return AwsError(
        "PreconditionFailedException",
        "The Revision Id provided does not match the latest Revision Id. "
        "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
    )
