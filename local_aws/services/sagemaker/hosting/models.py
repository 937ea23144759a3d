"""CreateModel, DescribeModel, DeleteModel, ListModels.

A container may name a model package (``ModelPackageName``) instead of an image and model
data: CreateModel then takes the container from the package's InferenceSpecification (the
registry service, ``model-registry``), with the container's own Environment on top, as
SageMaker does. Like SageMaker it does not ask for the package's approval status; the
pipeline's operator checks that before it calls CreateModel.
"""

from __future__ import annotations

from typing import Any

from local_aws.protocol.api import operation
from local_aws.protocol.errors import validation_error
from local_aws.services.base import now
from local_aws.services.sagemaker.api import s3_location
from local_aws.services.sagemaker.hosting.records import HostingState, ModelRecord, page_of

DESCRIBED_FIELDS = (
    "PrimaryContainer",
    "Containers",
    "ExecutionRoleArn",
    "VpcConfig",
    "InferenceExecutionConfig",
)


class Models:
    def __init__(self, state: HostingState):
        self._state = state

    @operation("CreateModel")
    def create_model(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["ModelName"]
        containers = request.get("Containers") or (
            [request["PrimaryContainer"]] if request.get("PrimaryContainer") else []
        )
        if not containers:
            raise validation_error("Either PrimaryContainer or Containers must be specified.")
        served = [self._served_container(container) for container in containers]
        arn = self._state.arn("model", name)
        with self._state.lock:
            if name.lower() in self._state.models:
                raise validation_error(f'Cannot create already existing model "{arn}".')
            self._state.models[name.lower()] = ModelRecord(name, arn, served, request, now())
        self._state.context.tags.add(arn, request.get("Tags"))
        return {"ModelArn": arn}

    def _served_container(self, container: dict[str, Any]) -> dict[str, Any]:
        """What the model server runs for ``container``: itself, or its model package's container."""
        if package := container.get("ModelPackageName"):
            given = sorted(key for key in ("Image", "ModelDataUrl", "ModelDataSource") if container.get(key))
            if given:
                raise validation_error(
                    f"A container with ModelPackageName takes its image and model data from the "
                    f"package; do not also specify {', '.join(given)}."
                )
            registry = self._state.context.services["model-registry"]
            served = registry.inference_container(package)
            if not served.get("Image"):
                raise validation_error(f"Model package {package} has no Image in its InferenceSpecification.")
            own = container.get("Environment") or {}
            served["Environment"] = {**(served.get("Environment") or {}), **own}
            return served
        if not container.get("Image"):
            raise validation_error("Image must be specified for each container.")
        if url := container.get("ModelDataUrl"):
            s3_location(url)
        return container

    @operation("DescribeModel")
    def describe_model(self, request: dict[str, Any]) -> dict[str, Any]:
        record = self._state.model(request["ModelName"])
        response = {
            "ModelName": record.name,
            "ModelArn": record.arn,
            "CreationTime": record.created,
            "EnableNetworkIsolation": bool(record.request.get("EnableNetworkIsolation", False)),
        }
        response.update({key: record.request[key] for key in DESCRIBED_FIELDS if key in record.request})
        return response

    @operation("DeleteModel")
    def delete_model(self, request: dict[str, Any]) -> dict[str, Any]:
        record = self._state.model(request["ModelName"])
        with self._state.lock:
            self._state.models.pop(record.name.lower(), None)
        self._state.context.tags.forget(record.arn)
        return {}

    @operation("ListModels")
    def list_models(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._state.lock:
            records = list(self._state.models.values())
        page, token = page_of(request, records)
        return {
            "Models": [{"ModelName": r.name, "ModelArn": r.arn, "CreationTime": r.created} for r in page],
            **token,
        }
