"""CreateModel, DescribeModel, DeleteModel, ListModels."""

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
        for container in containers:
            if container.get("ModelPackageName"):
                raise validation_error(
                    "local_aws does not implement models from model packages (ModelPackageName)."
                )
            if not container.get("Image"):
                raise validation_error("Image must be specified for each container.")
            if url := container.get("ModelDataUrl"):
                s3_location(url)
        arn = self._state.arn("model", name)
        with self._state.lock:
            if name.lower() in self._state.models:
                raise validation_error(f'Cannot create already existing model "{arn}".')
            self._state.models[name.lower()] = ModelRecord(name, arn, containers, request, now())
        self._state.context.tags.add(arn, request.get("Tags"))
        return {"ModelArn": arn}

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
