"""What the model page reads from AWS, through the provider's hooks on ``aws_default``.

The same calls reach AWS or, when the connection carries an ``endpoint_url``, local_aws.
Clients get short timeouts and few retries: a page waits seconds for an answer, not minutes.
boto3 is imported by the hooks when a request needs a client, never at api-server start.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from dog_breed import gate, specs
from dog_breed.params import AWS_CONN_ID
from dog_breed.s3uri import split_s3_uri
from dog_breed.ui.view_model import EndpointRecords

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# Enough for every [metrics] line of a long job; a runaway log cannot hold a request.
MAX_LOG_EVENTS = 100_000
_NOT_FOUND_CODES = {
    "ValidationException",
    "ResourceNotFound",
    "ResourceNotFoundException",
    "NoSuchKey",
    "404",
    "NotFound",
    "NoSuchEntity",
    "ObjectNotFoundException",
}
_SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_LAMBDA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_VARIANT_RESOURCE = re.compile(r"^endpoint/[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}/variant/[a-zA-Z0-9_.-]{1,63}$")


class NotFound(Exception):
    """The resource does not exist (AWS said so)."""


def is_not_found(error: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(error, ClientError):
        return False
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    # SageMaker answers a missing resource with ValidationException "Could not find ..."
    if code == "ValidationException":
        return "could not find" in message.lower() or "not found" in message.lower()
    return code in _NOT_FOUND_CODES


def or_none(call: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return call(**kwargs)
    except Exception as error:
        if is_not_found(error):
            return None
        raise


class AwsReader:
    """boto3 clients of ``aws_default`` (made on first use, one per service)."""

    def __init__(self, aws_conn_id: str | None = AWS_CONN_ID, region_name: str | None = None):
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self._clients: dict[str, Any] = {}

    def hook(self, service: str):
        from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook
        from botocore.config import Config

        config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2, "mode": "standard"})
        return AwsGenericHook(
            aws_conn_id=self.aws_conn_id, client_type=service, region_name=self.region_name, config=config
        )

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.hook(service).conn
        return self._clients[service]

    @cached_property
    def region(self) -> str:
        return self.client("sagemaker").meta.region_name

    @cached_property
    def partition(self) -> str:
        return self.client("sagemaker").meta.partition

    def endpoint_url(self, service: str) -> str | None:
        return self.hook(service).conn_config.get_service_endpoint_url(service)

    # -- the endpoint and what is behind it ---------------------------------------------
    def endpoint_names(self) -> list[str]:
        paginator = self.client("sagemaker").get_paginator("list_endpoints")
        return sorted(e["EndpointName"] for page in paginator.paginate() for e in page["Endpoints"])

    def endpoint_records(self, name: str) -> EndpointRecords:
        from dog_breed.specs import SCALABLE_DIMENSION, SERVICE_NAMESPACE, variant_resource_id

        sagemaker = self.client("sagemaker")
        endpoint = or_none(sagemaker.describe_endpoint, EndpointName=name)
        if endpoint is None:
            return EndpointRecords()
        config = or_none(
            sagemaker.describe_endpoint_config, EndpointConfigName=endpoint["EndpointConfigName"]
        )
        endpoint_tags = self.tags(endpoint["EndpointArn"])
        config_tags = self.tags(config["EndpointConfigArn"]) if config else {}
        tags = {**config_tags, **endpoint_tags}
        variants = (config or {}).get("ProductionVariants") or []
        model_name = variants[0].get("ModelName") if variants else tags.get(gate.TAG_MODEL_NAME)
        model = or_none(sagemaker.describe_model, ModelName=model_name) if model_name else None
        job = tags.get(gate.TAG_TRAINING_JOB)
        training = self.training_job(job) if job else None
        variant = (endpoint.get("ProductionVariants") or variants or [{}])[0].get("VariantName")
        targets: list[dict[str, Any]] = []
        policies: list[dict[str, Any]] = []
        if variant:
            scaling = self.client("application-autoscaling")
            scope = {
                "ServiceNamespace": SERVICE_NAMESPACE,
                "ScalableDimension": SCALABLE_DIMENSION,
            }
            resource_id = variant_resource_id(name, variant)
            targets = scaling.describe_scalable_targets(ResourceIds=[resource_id], **scope)["ScalableTargets"]
            policies = scaling.describe_scaling_policies(ResourceId=resource_id, **scope)["ScalingPolicies"]
        package_arn = tags.get(gate.TAG_MODEL_PACKAGE_ARN)
        package = (
            or_none(sagemaker.describe_model_package, ModelPackageName=package_arn) if package_arn else None
        )
        return EndpointRecords(
            endpoint=endpoint,
            endpoint_config=config,
            endpoint_tags=endpoint_tags,
            endpoint_config_tags=config_tags,
            model=model,
            training_job=training,
            scalable_targets=targets,
            scaling_policies=policies,
            model_package=package,
        )

    def tags(self, arn: str) -> dict[str, str]:
        return specs.tags_as_dict(self.client("sagemaker").list_tags(ResourceArn=arn).get("Tags", []))

    def training_job(self, name: str) -> dict[str, Any] | None:
        return or_none(self.client("sagemaker").describe_training_job, TrainingJobName=name)

    # -- logs, objects ------------------------------------------------------------------------
    def training_log_lines(self, job_name: str) -> Iterator[str]:
        """Every line the job's instances logged (all ``<job>/algo-N-<epoch>`` streams)."""
        from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

        logs = AwsLogsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        try:
            pages = logs.conn.get_paginator("describe_log_streams").paginate(
                logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=f"{job_name}/"
            )
            streams = [s["logStreamName"] for page in pages for s in page["logStreams"]]
        except Exception as error:
            if is_not_found(error):
                return
            raise
        budget = MAX_LOG_EVENTS
        for stream in sorted(streams):
            for event in logs.get_log_events(TRAINING_LOG_GROUP, stream, start_from_head=True):
                yield event["message"]
                budget -= 1
                if budget <= 0:
                    return

    def object_exists(self, uri: str) -> bool:
        bucket, key = split_s3_uri(uri)
        return or_none(self.client("s3").head_object, Bucket=bucket, Key=key) is not None

    def read_object(self, uri: str, max_bytes: int) -> tuple[bytes, str | None]:
        """An object's bytes and content type; NotFound when absent, ValueError when too large."""
        bucket, key = split_s3_uri(uri)
        found = or_none(self.client("s3").get_object, Bucket=bucket, Key=key)
        if found is None:
            raise NotFound(uri)
        with found["Body"] as body:
            data = body.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ValueError(f"{uri} is larger than {max_bytes} bytes")
        return data, found.get("ContentType")


# -- the offline description pages ------------------------------------------------------------
@dataclass(frozen=True)
class Describer:
    """How to describe one kind of resource: its API call and the valid shape of its name."""

    service: str
    title: str
    name_pattern: re.Pattern[str]
    describe: Callable[[Any, str], dict[str, Any]]


def _scalable_target(client: Any, resource_id: str) -> dict[str, Any]:
    from dog_breed.specs import SCALABLE_DIMENSION, SERVICE_NAMESPACE

    scope = {"ServiceNamespace": SERVICE_NAMESPACE, "ScalableDimension": SCALABLE_DIMENSION}
    targets = client.describe_scalable_targets(ResourceIds=[resource_id], **scope)["ScalableTargets"]
    if not targets:
        raise NotFound(resource_id)
    policies = client.describe_scaling_policies(ResourceId=resource_id, **scope)["ScalingPolicies"]
    return {"ScalableTargets": targets, "ScalingPolicies": policies}


def _call(method: str, parameter: str) -> Callable[[Any, str], dict[str, Any]]:
    return lambda client, name: getattr(client, method)(**{parameter: name})


# kind -> (title, Describe* method, its name parameter)
_SAGEMAKER_KINDS = {
    "hyper-parameter-tuning-job": (
        "SageMaker hyperparameter tuning job",
        "describe_hyper_parameter_tuning_job",
        "HyperParameterTuningJobName",
    ),
    "training-job": ("SageMaker training job", "describe_training_job", "TrainingJobName"),
    "model": ("SageMaker model", "describe_model", "ModelName"),
    "endpoint-config": ("SageMaker endpoint configuration", "describe_endpoint_config", "EndpointConfigName"),
    "endpoint": ("SageMaker endpoint", "describe_endpoint", "EndpointName"),
}
DESCRIBERS: dict[tuple[str, str], Describer] = {
    **{
        ("sagemaker", kind): Describer("sagemaker", title, _SAGEMAKER_NAME, _call(method, parameter))
        for kind, (title, method, parameter) in _SAGEMAKER_KINDS.items()
    },
    ("lambda", "function"): Describer(
        "lambda", "Lambda function", _LAMBDA_NAME, _call("get_function_configuration", "FunctionName")
    ),
    ("application-autoscaling", "scalable-target"): Describer(
        "application-autoscaling", "Application Auto Scaling target", _VARIANT_RESOURCE, _scalable_target
    ),
}


def describe(reader: AwsReader, service: str, kind: str, name: str) -> dict[str, Any]:
    """The Describe* answer for one resource, without ResponseMetadata.

    KeyError: no such kind; ValueError: a name that kind cannot have; NotFound: it does not exist.
    """
    describer = DESCRIBERS[(service, kind)]
    if not describer.name_pattern.match(name):
        raise ValueError(f"{name!r} is not a valid {describer.title} name")
    try:
        answer = describer.describe(reader.client(describer.service), name)
    except Exception as error:
        if isinstance(error, NotFound) or is_not_found(error):
            raise NotFound(f"{describer.title} {name} not found") from error
        raise
    return {k: v for k, v in answer.items() if k != "ResponseMetadata"}
