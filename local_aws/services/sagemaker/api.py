"""The SageMaker API (AWS JSON 1.1) and the errors its callers match on."""

from __future__ import annotations

from local_aws.infra import s3
from local_aws.protocol.api import Api
from local_aws.protocol.errors import AwsError, validation_error

SAGEMAKER = Api("sagemaker")


def not_found(kind: str, name: str) -> AwsError:
    # SageMaker answers a missing resource with ValidationException "Could not find ...";
    # the provider's operators and botocore's waiters match on that text.
    return validation_error(f"Could not find {kind} '{name}'.")


def s3_location(uri: str) -> tuple[str, str]:
    """(bucket, key) of an S3 URI in a request; local_aws reads S3 only (the model allows https too)."""
    try:
        return s3.split_s3_uri(uri)
    except ValueError as error:
        raise validation_error(f"local_aws reads S3 URIs only: {error}") from error
