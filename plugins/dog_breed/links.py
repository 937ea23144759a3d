"""Operator extra links: the AWS console page of the resource a task made, or offline its
local_aws description served by the model page's app.

Like the provider's links (``BaseAwsLink``): the operator calls ``persist_for`` once it knows
the resource's name; the worker turns that XCom into the URL when the task finishes and the
UI shows it as a button on the task instance. When the ``aws_default`` connection sends the
service to an ``endpoint_url`` (local_aws), the AWS console would show nothing, so the link
points at ``/dog-breed/aws/<service>/<kind>/<name>`` instead: the Describe* answer read
through the same connection (``dog_breed.ui.app``).
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any, ClassVar

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink

log = logging.getLogger(__name__)

# Where dog_breed_ui.py mounts the page's FastAPI app in the api-server.
UI_URL_PREFIX = "/dog-breed"
SAGEMAKER_CONSOLE = BASE_AWS_CONSOLE_LINK + "/sagemaker/home?region={region_name}#"
LAMBDA_CONSOLE = BASE_AWS_CONSOLE_LINK + "/lambda/home?region={region_name}#"


def description_path(service: str, kind: str, name: str, base_path: str = "") -> str:
    """The model page's URL of one resource's Describe* answer (``base_path``: the UI's path prefix)."""
    return f"{base_path.rstrip('/')}{UI_URL_PREFIX}/aws/{service}/{kind}/{urllib.parse.quote(name, safe='/')}"


def ui_base_path() -> str:
    """Path part of ``[api] base_url`` (empty when the UI is served at the host's root)."""
    from airflow.configuration import conf

    return urllib.parse.urlparse(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


class DogBreedAwsLink(BaseAwsLink):
    """A BaseAwsLink whose resource has an offline description page too.

    Subclasses name the service and the resource ``kind`` of the description page and the
    field (``name_field``) that carries the resource's name in ``format_str``.
    """

    service: ClassVar[str]
    kind: ClassVar[str]
    name_field: ClassVar[str]

    def format_link(self, *, description_path: str | None = None, **kwargs: Any) -> str:
        # Offline the persisted XCom carries the description page; the console would be empty.
        return description_path or super().format_link(**kwargs)

    @classmethod
    def link_fields(
        cls, *, name: str, region_name: str, aws_partition: str, endpoint_url: str | None, base_path: str = ""
    ) -> dict[str, Any]:
        """What ``persist`` stores: console fields, plus the description page when offline."""
        fields: dict[str, Any] = {cls.name_field: urllib.parse.quote(name, safe="")}
        if endpoint_url:
            fields["description_path"] = description_path(cls.service, cls.kind, name, base_path)
        return {"region_name": region_name, "aws_partition": aws_partition, **fields}

    @classmethod
    def url_for(
        cls, name: str, *, region_name: str, aws_partition: str, endpoint_url: str | None, base_path: str = ""
    ) -> str:
        """The URL ``get_link`` would give for ``name``, without an XCom (for the model page)."""
        fields = cls.link_fields(
            name=name,
            region_name=region_name,
            aws_partition=aws_partition,
            endpoint_url=endpoint_url,
            base_path=base_path,
        )
        return cls().format_link(aws_domain=cls.get_aws_domain(fields.pop("aws_partition")), **fields)

    @classmethod
    def persist_for(cls, context: Any, operator: Any, name: str) -> None:
        """Record the link for ``operator``'s resource ``name``; a failure is logged, never raised.

        Region, partition and endpoint URL come from the operator's connection, as the
        operator's own clients see them.
        """
        try:
            from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

            hook = AwsGenericHook(
                aws_conn_id=operator.aws_conn_id, region_name=operator.region_name, client_type=cls.service
            )
            fields = cls.link_fields(
                name=name,
                region_name=hook.conn_region_name,
                aws_partition=hook.conn_partition,
                endpoint_url=hook.conn_config.get_service_endpoint_url(cls.service),
                base_path=ui_base_path(),
            )
            cls.persist(context=context, operator=operator, **fields)
        except Exception:  # a missing link must never fail the task that made the resource
            log.warning("Could not record the %r link for %s", cls.name, name, exc_info=True)


class SageMakerTuningJobLink(DogBreedAwsLink):
    name = "SageMaker tuning job"
    key = "dog_breed_tuning_job"
    service, kind, name_field = "sagemaker", "hyper-parameter-tuning-job", "job_name"
    format_str = SAGEMAKER_CONSOLE + "/hyper-tuning-jobs/{job_name}"


class SageMakerTrainingJobLink(DogBreedAwsLink):
    name = "SageMaker training job"
    key = "dog_breed_training_job"
    service, kind, name_field = "sagemaker", "training-job", "job_name"
    format_str = SAGEMAKER_CONSOLE + "/jobs/{job_name}"


class SageMakerModelLink(DogBreedAwsLink):
    name = "SageMaker model"
    key = "dog_breed_model"
    service, kind, name_field = "sagemaker", "model", "model_name"
    format_str = SAGEMAKER_CONSOLE + "/models/{model_name}"


class SageMakerEndpointLink(DogBreedAwsLink):
    name = "SageMaker endpoint"
    key = "dog_breed_endpoint"
    service, kind, name_field = "sagemaker", "endpoint", "endpoint_name"
    format_str = SAGEMAKER_CONSOLE + "/endpoints/{endpoint_name}"


class SageMakerEndpointConfigLink(DogBreedAwsLink):
    name = "SageMaker endpoint configuration"
    key = "dog_breed_endpoint_config"
    service, kind, name_field = "sagemaker", "endpoint-config", "endpoint_config_name"
    format_str = SAGEMAKER_CONSOLE + "/endpointConfig/{endpoint_config_name}"


class EndpointAutoscalingLink(DogBreedAwsLink):
    """The console shows a variant's scaling on its endpoint's page; offline, the scalable target."""

    name = "Endpoint autoscaling"
    key = "dog_breed_autoscaling"
    service, kind, name_field = "application-autoscaling", "scalable-target", "resource_id"
    format_str = SAGEMAKER_CONSOLE + "/endpoints/{endpoint_name}"

    @classmethod
    def link_fields(cls, *, name: str, **kwargs: Any) -> dict[str, Any]:
        # name is the resource id endpoint/<endpoint>/variant/<variant>
        endpoint_name = name.split("/")[1] if name.count("/") == 3 else name
        return {**super().link_fields(name=name, **kwargs), "endpoint_name": endpoint_name}


class LambdaFunctionLink(DogBreedAwsLink):
    name = "Lambda function"
    key = "dog_breed_lambda_function"
    service, kind, name_field = "lambda", "function", "function_name"
    format_str = LAMBDA_CONSOLE + "/functions/{function_name}"
