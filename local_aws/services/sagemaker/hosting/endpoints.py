"""CreateEndpoint, UpdateEndpoint, UpdateEndpointWeightsAndCapacities, DeleteEndpoint, Describe, List.

UpdateEndpoint brings the new config up beside the old one, swaps the two atomically once every
new instance answers /ping, then drains and stops the old one: no request fails in between. If
the new config cannot come up, the old one keeps serving and DescribeEndpoint says InService
with a FailureReason, as SageMaker does. With a ``DeploymentConfig`` (or
``RetainDeploymentConfig``) the update is a blue/green deployment with traffic shifting and
alarm rollback instead (:mod:`.rollouts`).
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
from local_aws.services.sagemaker.hosting.rollouts import (
    BlueGreenRollout,
    BlueGreenUpdate,
    blue_green_policy,
    check_alarms_exist,
    plan_blue_green,
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
            current = endpoint.deployment
        if request.get("RetainAllVariantProperties") and current is not None:
            config = _retaining(config, current)
        deployment_config = request.get("DeploymentConfig")
        if deployment_config is None and request.get("RetainDeploymentConfig"):
            deployment_config = endpoint.last_deployment_config
        blue_green = self._blue_green(endpoint, config, deployment_config, current)
        with self._state.lock:
            _require_in_service(endpoint, "update")  # again: another update may have started meanwhile
            endpoint.status, endpoint.modified, endpoint.failure_reason = "Updating", now(), None
            endpoint.pending = PendingUpdate(config, now())
            rollout = None
            if blue_green is not None:
                rollout = BlueGreenRollout(self._state, self._deployments, endpoint, config, blue_green)
            endpoint.rollout = rollout
        if rollout is not None:
            in_background(f"blue-green-{endpoint.name}", rollout.run)
        else:
            in_background(f"update-{endpoint.name}", lambda: self._update(endpoint, config))
        return {"EndpointArn": endpoint.arn}

    def _blue_green(
        self,
        endpoint: EndpointRecord,
        config: EndpointConfigRecord,
        deployment_config: dict[str, Any] | None,
        current: Deployment | None,
    ) -> BlueGreenUpdate | None:
        """The checked blue/green update a DeploymentConfig asks for (None: the plain swap)."""
        policy = blue_green_policy(deployment_config)
        if policy is None or deployment_config is None:
            return None
        new_names = sorted(v["VariantName"] for v in config.variants)
        old_names = sorted(current.variants) if current is not None else new_names
        if new_names != old_names:
            raise validation_error(
                f"For a blue/green deployment the endpoint configuration {config.name} must have the same "
                f"variant names as the one the endpoint {endpoint.name} runs: {old_names}, not {new_names}."
            )
        plan = plan_blue_green(policy, sum(int(v["InitialInstanceCount"]) for v in config.variants))
        check_alarms_exist(self._state.context, deployment_config)
        return BlueGreenUpdate(deployment_config, plan)

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
            rollout = endpoint.rollout
            green_share = rollout.green_share() if rollout is not None else 0.0
            if endpoint.deployment is not None:
                response["ProductionVariants"] = [
                    _variant_summary(v, 1.0 - green_share) for v in endpoint.deployment.variants.values()
                ]
            if endpoint.failure_reason:
                response["FailureReason"] = endpoint.failure_reason
            if rollout is not None:
                response["PendingDeploymentSummary"] = _blue_green_summary(rollout)
            elif endpoint.pending is not None:
                response["PendingDeploymentSummary"] = _pending_summary(endpoint.pending)
            if endpoint.last_deployment_config is not None:
                response["LastDeploymentConfig"] = endpoint.last_deployment_config
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


def _variant_summary(variant: VariantFleet, traffic: float = 1.0) -> dict[str, Any]:
    """A running variant; ``traffic`` is the share of requests its fleet takes (its CurrentWeight
    is the weight times that share while a blue/green update shifts traffic)."""
    return {
        "VariantName": variant.name,
        "DeployedImages": [
            {
                "SpecifiedImage": variant.image,
                "ResolvedImage": variant.image,
                "ResolutionTime": variant.deployed_at,
            }
        ],
        "CurrentWeight": variant.weight * traffic,
        "DesiredWeight": variant.weight,
        "CurrentInstanceCount": variant.current_count,
        "DesiredInstanceCount": variant.desired_count,
    }


def _blue_green_summary(rollout: BlueGreenRollout) -> dict[str, Any]:
    """The green fleet of a blue/green update: its weight is the share of traffic it takes, its
    status the phase (Creating, Baking after each shift, with what the phase is in the message)."""
    status = {"Status": rollout.status, "StatusMessage": rollout.message, "StartTime": rollout.status_since}
    green = rollout.green
    variants = []
    for variant in rollout.config.variants:
        running = green.variants.get(variant["VariantName"]) if green is not None else None
        weight = float(variant.get("InitialVariantWeight", 1.0))
        summary: dict[str, Any] = {
            "VariantName": variant["VariantName"],
            "CurrentWeight": weight * rollout.green_share(),
            "DesiredWeight": weight,
            "CurrentInstanceCount": running.current_count if running is not None else 0,
            "DesiredInstanceCount": int(variant["InitialInstanceCount"]),
            "InstanceType": variant["InstanceType"],
            "VariantStatus": [status],
        }
        if running is not None:
            summary["DeployedImages"] = _variant_summary(running)["DeployedImages"]
        variants.append(summary)
    started = rollout.started
    return {"EndpointConfigName": rollout.config.name, "ProductionVariants": variants, "StartTime": started}


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
