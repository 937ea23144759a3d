"""The SageMaker Runtime API (REST JSON): its own error codes and its front end's 6 MB limit."""

from __future__ import annotations

from local_aws.protocol.api import Api
from local_aws.protocol.errors import AwsError

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # real-time endpoints: 6 MB request payload


def payload_too_large(operation: str, limit: int) -> AwsError:
    # What SageMaker answers for an oversize real-time request: a bare 413, no error code
    # (botocore then reports the code as "413").
    return AwsError(None, f"HTTP content length exceeded {limit} bytes.", 413)


RUNTIME = Api(
    "sagemaker-runtime",
    validation_error="ValidationError",
    max_request_bytes=MAX_PAYLOAD_BYTES,
    request_too_large=payload_too_large,
)
