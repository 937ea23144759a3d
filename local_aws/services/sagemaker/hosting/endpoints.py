"""CreateEndpoint, UpdateEndpoint, UpdateEndpointWeightsAndCapacities, DeleteEndpoint, Describe, List.

UpdateEndpoint brings the new config up beside the old one, swaps the two atomically once every
new instance answers /ping, then drains and stops the old one: no request fails in between. If
the new config cannot come up, the old one keeps serving and DescribeEndpoint says InService
with a FailureReason, as SageMaker does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from local_aws.infra.background import in_background
from local_aws.protocol.api import operation
from local_aws.protocol.errors import validation_error
from local_aws.services.base import now
from local_aws.services.sagemaker.hosting import instance
from local_aws.services.sagemaker.hosting.deployments import Deployments
from local_aws.services.sagemaker.hosting.fleet import Deployment, VariantFleet
from local_aws.services.sagemaker.hosting.instance import StartupFailure
from local_aws.services.sagemaker.hosting.records import (
    EndpointConfigRecord,
    EndpointRecord,
    HostingState,
    PendingUpdate,
    page_of_endpoints,
)


class Endpoints:
    def __init__(self, state: HostingState, deployments: Deployments):
        self._state = state
        self._deployments = deployments

    @operation("CreateEndpoint")
    def create_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["EndpointName"]
        config = self._state.config(request["EndpointConfigName"])
        arn = self._state.arn("endpoint", name)
        with self._state.lock:
            if name.lower() in self._state.endpoints:
                raise validation_error(f'Cannot create already existing endpoint "{arn}".')
            created = now()
            endpoint = EndpointRecord(name, arn, config.name, "Creating", created, created)
            self._state.endpoints[name.lower()] = endpoint
        self._state.context.tags.add(arn, request.get("Tags"))
        in_background(f"create-{name}", lambda: self._create(endpoint, config))
        return {"EndpointArn": arn}

    @operation("UpdateEndpoint")
    def update_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._state.endpoint(request["EndpointName"])
        config = self._state.config(request["EndpointConfigName"])
        with self._state.lock:
            _require_in_service(endpoint, "update")
            endpoint.status, endpoint.modified, endpoint.failure_reason = "Updating", now(), None
            endpoint.pending = PendingUpdate(config, now())
            current = endpoint.deployment
        if request.get("RetainAllVariantProperties") and current is not None:
            config = _retaining(config, current)
        in_background(f"update-{endpoint.name}", lambda: self._update(endpoint, config))
        return {"EndpointArn": endpoint.arn}

    @operation("UpdateEndpointWeightsAndCapacities")
    def update_endpoint_weights_and_capacities(self, request: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._state.endpoint(request["EndpointName"])
        desired = request["DesiredWeightsAndCapacities"]
        with self._state.lock:
            _require_in_service(endpoint, "update")
            deployment = endpoint.deployment
            assert deployment is not None
            unknown = [d["VariantName"] for d in desired if d["VariantName"] not in deployment.variants]
            if unknown:
                raise validation_error(
                    f"The variant name(s) {', '.join(map(str, unknown))} is/are not present in the endpoint "
                    f'"{endpoint.arn}".'
                )
            endpoint.status, endpoint.modified, endpoint.failure_reason = "Updating", now(), None
        in_background(f"scale-{endpoint.name}", lambda: self._scale(endpoint, deployment, desired))
        return {"EndpointArn": endpoint.arn}

    @operation("DeleteEndpoint")
    def delete_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._state.endpoint(request["EndpointName"])
        with self._state.lock:
            if endpoint.status == "Deleting":
                raise validation_error(f'Cannot delete in-progress endpoint "{endpoint.arn}".')
            endpoint.status, endpoint.modified, endpoint.deleted = "Deleting", now(), True
        deployments = self._deployments.of(endpoint)

        def delete() -> None:
            for deployment in deployments:
                self._deployments.retire(deployment)
            with self._state.lock:
                if self._state.endpoints.get(endpoint.name.lower()) is endpoint:
                    del self._state.endpoints[endpoint.name.lower()]
            self._state.context.tags.forget(endpoint.arn)

        in_background(f"delete-{endpoint.name}", delete)
        return {}

    @operation("DescribeEndpoint")
    def describe_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        endpoint = self._state.endpoint(request["EndpointName"])
        with self._state.lock:
            response: dict[str, Any] = {
                "EndpointName": endpoint.name,
                "EndpointArn": endpoint.arn,
                "EndpointConfigName": endpoint.config_name,
                "EndpointStatus": endpoint.status,
                "CreationTime": endpoint.created,
                "LastModifiedTime": endpoint.modified,
            }
            if endpoint.deployment is not None:
                response["ProductionVariants"] = [
                    _variant_summary(v) for v in endpoint.deployment.variants.values()
                ]
            if endpoint.failure_reason:
                response["FailureReason"] = endpoint.failure_reason
            if endpoint.pending is not None:
                response["PendingDeploymentSummary"] = _pending_summary(endpoint.pending)
        return response

    @operation("ListEndpoints")
    def list_endpoints(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._state.lock:
            records = list(self._state.endpoints.values())
        page, token = page_of_endpoints(request, records)
        listed = [
            {
                "EndpointName": r.name,
                "EndpointArn": r.arn,
                "CreationTime": r.created,
                "LastModifiedTime": r.modified,
                "EndpointStatus": r.status,
            }
            for r in page
        ]
        return {"Endpoints": listed, **token}

    # -- in the background ----------------------------------------------------------------------------
    def _create(self, endpoint: EndpointRecord, config: EndpointConfigRecord) -> None:
        try:
            deployment = self._deployments.deploy(endpoint, config)
        except StartupFailure as failure:
            with self._state.lock:
                if not endpoint.deleted:
                    endpoint.status, endpoint.failure_reason, endpoint.modified = (
                        "Failed",
                        str(failure),
                        now(),
                    )
            return
        with self._state.lock:
            stale = deployment if endpoint.deleted else None
            if stale is None:
                endpoint.deployment, endpoint.status, endpoint.modified = deployment, "InService", now()
        if stale is not None:
            self._deployments.retire(stale)

    def _update(self, endpoint: EndpointRecord, config: EndpointConfigRecord) -> None:
        try:
            deployment = self._deployments.deploy(endpoint, config)
        except StartupFailure as failure:
            with self._state.lock:
                if not endpoint.deleted:  # the old deployment never stopped serving
                    endpoint.status, endpoint.modified = "InService", now()
                    endpoint.failure_reason, endpoint.pending = str(failure), None
            return
        with self._state.lock:  # the swap: requests lease a deployment under this same lock
            old = endpoint.deployment
            if endpoint.deleted:
                old = deployment
            else:
                endpoint.deployment, endpoint.config_name = deployment, config.name
                endpoint.status, endpoint.modified, endpoint.pending = "InService", now(), None
        if old is not None:
            old.in_flight.wait_idle(timeout=instance.INVOCATION_TIMEOUT_SECONDS + 5)
            self._deployments.retire(old)

    def _scale(self, endpoint: EndpointRecord, deployment: Deployment, desired: list[dict[str, Any]]) -> None:
        failure: str | None = None
        for change in desired:
            variant = deployment.variants[change["VariantName"]]
            if change.get("DesiredWeight") is not None:
                variant.weight = float(change["DesiredWeight"])
            if change.get("DesiredInstanceCount") is not None:
                try:
                    variant.scale_to(int(change["DesiredInstanceCount"]))
                except StartupFailure as error:
                    failure = str(error)
                    variant.scale_to(variant.current_count)  # stop what did not come up
        with self._state.lock:
            if not endpoint.deleted:
                endpoint.status, endpoint.modified, endpoint.failure_reason = "InService", now(), failure


def _require_in_service(endpoint: EndpointRecord, verb: str) -> None:
    if endpoint.status == "Failed":
        raise validation_error(
            f'Cannot {verb} failed endpoint "{endpoint.arn}". '
            "DeleteEndpoint is the only operation that can be performed on a failed endpoint."
        )
    if endpoint.status != "InService":
        raise validation_error(f'Cannot {verb} in-progress endpoint "{endpoint.arn}".')


def _variant_summary(variant: VariantFleet) -> dict[str, Any]:
    return {
        "VariantName": variant.name,
        "DeployedImages": [
            {
                "SpecifiedImage": variant.image,
                "ResolvedImage": variant.image,
                "ResolutionTime": variant.deployed_at,
            }
        ],
        "CurrentWeight": variant.weight,
        "DesiredWeight": variant.weight,
        "CurrentInstanceCount": variant.current_count,
        "DesiredInstanceCount": variant.desired_count,
    }


def _pending_summary(pending: PendingUpdate) -> dict[str, Any]:
    return {
        "EndpointConfigName": pending.config.name,
        "ProductionVariants": [
            {
                "VariantName": v["VariantName"],
                "DesiredInstanceCount": v["InitialInstanceCount"],
                "DesiredWeight": float(v.get("InitialVariantWeight", 1.0)),
                "InstanceType": v["InstanceType"],
            }
            for v in pending.config.variants
        ],
        "StartTime": pending.started,
    }


def _retaining(config: EndpointConfigRecord, current: Deployment) -> EndpointConfigRecord:
    """RetainAllVariantProperties: keep the running variants' instance counts and weights."""
    variants = []
    for variant in config.variants:
        running = current.variants.get(variant["VariantName"])
        if running is not None:
            variant = {
                **variant,
                "InitialInstanceCount": running.desired_count,
                "InitialVariantWeight": running.weight,
            }
        variants.append(variant)
    return dataclasses.replace(config, variants=variants)
