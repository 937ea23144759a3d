"""CreateEndpointConfig, DescribeEndpointConfig, DeleteEndpointConfig, ListEndpointConfigs."""

from __future__ import annotations

from typing import Any

from local_aws.protocol.api import operation
from local_aws.protocol.errors import validation_error
from local_aws.services.base import now
from local_aws.services.sagemaker.hosting.records import EndpointConfigRecord, HostingState, page_of

DESCRIBED_FIELDS = ("DataCaptureConfig", "KmsKeyId", "AsyncInferenceConfig", "ExecutionRoleArn")


class EndpointConfigs:
    def __init__(self, state: HostingState):
        self._state = state

    @operation("CreateEndpointConfig")
    def create_endpoint_config(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["EndpointConfigName"]
        variants = request["ProductionVariants"]
        seen: set[str] = set()
        for variant in variants:
            variant_name = variant["VariantName"]
            if variant_name in seen:
                raise validation_error(f"Production variant names must be unique; {variant_name} repeats.")
            seen.add(variant_name)
            if variant.get("ServerlessConfig"):
                raise validation_error(
                    "local_aws does not implement serverless endpoints (ServerlessConfig)."
                )
            for needed in (
                "InstanceType",
                "InitialInstanceCount",
                "ModelName",
            ):  # optional in the model, not here
                if variant.get(needed) is None:
                    raise validation_error(f"{needed} is required for production variant {variant_name}.")
            self._state.model(variant["ModelName"])
        arn = self._state.arn("endpoint-config", name)
        with self._state.lock:
            if name.lower() in self._state.configs:
                raise validation_error(f'Cannot create already existing endpoint configuration "{arn}".')
            self._state.configs[name.lower()] = EndpointConfigRecord(name, arn, variants, request, now())
        self._state.context.tags.add(arn, request.get("Tags"))
        return {"EndpointConfigArn": arn}

    @operation("DescribeEndpointConfig")
    def describe_endpoint_config(self, request: dict[str, Any]) -> dict[str, Any]:
        record = self._state.config(request["EndpointConfigName"])
        response = {
            "EndpointConfigName": record.name,
            "EndpointConfigArn": record.arn,
            "ProductionVariants": [{"InitialVariantWeight": 1.0, **variant} for variant in record.variants],
            "CreationTime": record.created,
        }
        response.update({key: record.request[key] for key in DESCRIBED_FIELDS if key in record.request})
        return response

    @operation("DeleteEndpointConfig")
    def delete_endpoint_config(self, request: dict[str, Any]) -> dict[str, Any]:
        # SageMaker lets a config in use be deleted: the endpoint keeps running what it deployed.
        record = self._state.config(request["EndpointConfigName"])
        with self._state.lock:
            self._state.configs.pop(record.name.lower(), None)
        self._state.context.tags.forget(record.arn)
        return {}

    @operation("ListEndpointConfigs")
    def list_endpoint_configs(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._state.lock:
            records = list(self._state.configs.values())
        page, token = page_of(request, records)
        listed = [
            {"EndpointConfigName": r.name, "EndpointConfigArn": r.arn, "CreationTime": r.created}
            for r in page
        ]
        return {"EndpointConfigs": listed, **token}
