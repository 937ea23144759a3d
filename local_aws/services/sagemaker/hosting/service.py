"""SageMaker hosting: models, endpoint configs, endpoints (InvokeEndpoint: :mod:`sagemaker_runtime`).

An endpoint is model-server processes (:mod:`.model_server`), one per instance, started
from the endpoint config's models; see :mod:`.fleet`. Error codes and texts
follow SageMaker's, because callers (the Amazon provider's operators, botocore's waiters)
match on them:

* control plane (AWS JSON): ``ValidationException`` "Cannot create already existing model
  \"<arn>\"." / "Could not find endpoint \"<arn>\"." / ...
* runtime (REST JSON): ``ValidationError`` "Endpoint <name> of account <id> not found.",
  ``ModelError`` (424) with OriginalStatusCode / OriginalMessage / LogStreamArn, an HTTP 413 for a
  body over 6 MB, ``ServiceUnavailable`` (503, retried by botocore) when no instance answers.

UpdateEndpoint brings the new config up beside the old one, swaps the two atomically once every
new instance answers /ping, then drains and stops the old one: no request fails in between. If
the new config cannot come up, the old one keeps serving and DescribeEndpoint says InService
with a FailureReason, as SageMaker does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from local_aws.infra.background import every, in_background
from local_aws.protocol.api import operation
from local_aws.protocol.errors import AwsError, validation_error
from local_aws.services.base import Context, Service, now
from local_aws.services.sagemaker.api import SAGEMAKER, s3_location
from local_aws.services.sagemaker.hosting import fleet
from local_aws.services.sagemaker.hosting.fleet import (
    Deployment,
    ModelInstance,
    StartupFailure,
    VariantFleet,
    prepare_model_dir,
)
from local_aws.services.sagemaker.listing import list_page

log = logging.getLogger("local_aws.hosting")

DEFAULT_STARTUP_TIMEOUT_SECONDS = 600.0  # ContainerStartupHealthCheckTimeoutInSeconds when not given
SUPERVISE_INTERVAL_SECONDS = 0.5
AUTOSCALING_INTERVAL_SECONDS = 15.0  # how often registered scalable targets are evaluated
INVOCATIONS_PER_INSTANCE = "SageMakerVariantInvocationsPerInstance"


# -- records -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class ModelRecord:
    name: str
    arn: str
    containers: list[dict[str, Any]]
    request: dict[str, Any]
    created: dt.datetime

    @property
    def container(self) -> dict[str, Any]:
        return self.containers[0]


@dataclasses.dataclass
class EndpointConfigRecord:
    name: str
    arn: str
    variants: list[dict[str, Any]]
    request: dict[str, Any]
    created: dt.datetime


@dataclasses.dataclass
class PendingUpdate:
    config: EndpointConfigRecord
    started: dt.datetime


@dataclasses.dataclass
class EndpointRecord:
    name: str
    arn: str
    config_name: str
    status: str
    created: dt.datetime
    modified: dt.datetime
    failure_reason: str | None = None
    deployment: Deployment | None = None
    pending: PendingUpdate | None = None
    deleted: bool = False


# -- the service -------------------------------------------------------------------------------------
class HostingService(Service):
    api = SAGEMAKER

    def __init__(self, context: Context):
        super().__init__(context)
        self._models: dict[str, ModelRecord] = {}
        self._configs: dict[str, EndpointConfigRecord] = {}
        self._endpoints: dict[str, EndpointRecord] = {}
        self._lock = threading.RLock()
        self._restarting: set[str] = set()
        self._live: dict[Deployment, str] = {}  # every deployment with processes, by endpoint key
        self._last_scaled: dict[tuple[str, str], float] = {}  # (endpoint, variant) -> when it last scaled
        self._closing = threading.Event()
        self._root = Path(context.state_dir) / "hosting"
        self._autoscaling: Any = None
        every(SUPERVISE_INTERVAL_SECONDS, "hosting-supervisor", self._supervise, self._closing)
        every(AUTOSCALING_INTERVAL_SECONDS, "hosting-autoscaler", self._autoscale, self._closing)

    # -- ARNs and lookups: SageMaker ARNs carry the name in lower case, and names are unique ignoring case
    def _arn(self, kind: str, name: str) -> str:
        return self.context.arn("sagemaker", f"{kind}/{name.lower()}")

    def _get_model(self, name: str) -> ModelRecord:
        with self._lock:
            record = self._models.get(name.lower())
        if record is None:
            raise validation_error(f'Could not find model "{self._arn("model", name)}".')
        return record

    def _get_config(self, name: str) -> EndpointConfigRecord:
        with self._lock:
            record = self._configs.get(name.lower())
        if record is None:
            raise validation_error(
                f'Could not find endpoint configuration "{self._arn("endpoint-config", name)}".'
            )
        return record

    def _get_endpoint(self, name: str) -> EndpointRecord:
        with self._lock:
            record = self._endpoints.get(name.lower())
        if record is None:
            raise validation_error(f'Could not find endpoint "{self._arn("endpoint", name)}".')
        return record

    # -- models ------------------------------------------------------------------------------------------
    @operation("CreateModel")
    def create_model(self, request: dict) -> dict:
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
        arn = self._arn("model", name)
        with self._lock:
            if name.lower() in self._models:
                raise validation_error(f'Cannot create already existing model "{arn}".')
            self._models[name.lower()] = ModelRecord(name, arn, containers, request, now())
        self.context.tags.add(arn, request.get("Tags"))
        return {"ModelArn": arn}

    @operation("DescribeModel")
    def describe_model(self, request: dict) -> dict:
        record = self._get_model(request["ModelName"])
        response = {
            "ModelName": record.name,
            "ModelArn": record.arn,
            "CreationTime": record.created,
            "EnableNetworkIsolation": bool(record.request.get("EnableNetworkIsolation", False)),
        }
        for key in (
            "PrimaryContainer",
            "Containers",
            "ExecutionRoleArn",
            "VpcConfig",
            "InferenceExecutionConfig",
        ):
            if key in record.request:
                response[key] = record.request[key]
        return response

    @operation("DeleteModel")
    def delete_model(self, request: dict) -> dict:
        record = self._get_model(request["ModelName"])
        with self._lock:
            self._models.pop(record.name.lower(), None)
        self.context.tags.forget(record.arn)
        return {}

    @operation("ListModels")
    def list_models(self, request: dict) -> dict:
        with self._lock:
            records = list(self._models.values())
        page, token = _page(request, records)
        listed = [{"ModelName": r.name, "ModelArn": r.arn, "CreationTime": r.created} for r in page]
        return {"Models": listed, **token}

    # -- endpoint configs ------------------------------------------------------------------------------
    @operation("CreateEndpointConfig")
    def create_endpoint_config(self, request: dict) -> dict:
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
            if not variant.get("InstanceType"):
                raise validation_error(f"InstanceType is required for production variant {variant_name}.")
            for needed in ("InitialInstanceCount", "ModelName"):  # optional in the model, not here
                if variant.get(needed) is None:
                    raise validation_error(f"{needed} is required for production variant {variant_name}.")
            self._get_model(variant["ModelName"])
        arn = self._arn("endpoint-config", name)
        with self._lock:
            if name.lower() in self._configs:
                raise validation_error(f'Cannot create already existing endpoint configuration "{arn}".')
            self._configs[name.lower()] = EndpointConfigRecord(name, arn, variants, request, now())
        self.context.tags.add(arn, request.get("Tags"))
        return {"EndpointConfigArn": arn}

    @operation("DescribeEndpointConfig")
    def describe_endpoint_config(self, request: dict) -> dict:
        record = self._get_config(request["EndpointConfigName"])
        variants = [{"InitialVariantWeight": 1.0, **variant} for variant in record.variants]
        response = {
            "EndpointConfigName": record.name,
            "EndpointConfigArn": record.arn,
            "ProductionVariants": variants,
            "CreationTime": record.created,
        }
        for key in ("DataCaptureConfig", "KmsKeyId", "AsyncInferenceConfig", "ExecutionRoleArn"):
            if key in record.request:
                response[key] = record.request[key]
        return response

    @operation("DeleteEndpointConfig")
    def delete_endpoint_config(self, request: dict) -> dict:
        # SageMaker lets a config in use be deleted: the endpoint keeps running what it deployed.
        record = self._get_config(request["EndpointConfigName"])
        with self._lock:
            self._configs.pop(record.name.lower(), None)
        self.context.tags.forget(record.arn)
        return {}

    @operation("ListEndpointConfigs")
    def list_endpoint_configs(self, request: dict) -> dict:
        with self._lock:
            records = list(self._configs.values())
        page, token = _page(request, records)
        listed = [
            {"EndpointConfigName": r.name, "EndpointConfigArn": r.arn, "CreationTime": r.created}
            for r in page
        ]
        return {"EndpointConfigs": listed, **token}

    # -- endpoints ------------------------------------------------------------------------------------
    @operation("CreateEndpoint")
    def create_endpoint(self, request: dict) -> dict:
        name = request["EndpointName"]
        config = self._get_config(request["EndpointConfigName"])
        arn = self._arn("endpoint", name)
        with self._lock:
            if name.lower() in self._endpoints:
                raise validation_error(f'Cannot create already existing endpoint "{arn}".')
            created = now()
            endpoint = EndpointRecord(name, arn, config.name, "Creating", created, created)
            self._endpoints[name.lower()] = endpoint
        self.context.tags.add(arn, request.get("Tags"))
        in_background(f"create-{name}", lambda: self._create(endpoint, config))
        return {"EndpointArn": arn}

    def _create(self, endpoint: EndpointRecord, config: EndpointConfigRecord) -> None:
        try:
            deployment = self._deploy(endpoint, config)
        except StartupFailure as failure:
            with self._lock:
                if not endpoint.deleted:
                    endpoint.status, endpoint.failure_reason, endpoint.modified = (
                        "Failed",
                        str(failure),
                        now(),
                    )
            return
        with self._lock:
            if endpoint.deleted:
                stale = deployment
            else:
                stale = None
                endpoint.deployment, endpoint.status, endpoint.modified = deployment, "InService", now()
        if stale is not None:
            self._retire(stale)

    @operation("UpdateEndpoint")
    def update_endpoint(self, request: dict) -> dict:
        endpoint = self._get_endpoint(request["EndpointName"])
        config = self._get_config(request["EndpointConfigName"])
        retain = bool(request.get("RetainAllVariantProperties", False))
        with self._lock:
            self._require_in_service(endpoint, "update")
            endpoint.status, endpoint.modified, endpoint.failure_reason = "Updating", now(), None
            endpoint.pending = PendingUpdate(config, now())
            current = endpoint.deployment
        if retain and current is not None:
            config = _retaining(config, current)
        in_background(f"update-{endpoint.name}", lambda: self._update(endpoint, config))
        return {"EndpointArn": endpoint.arn}

    def _update(self, endpoint: EndpointRecord, config: EndpointConfigRecord) -> None:
        try:
            deployment = self._deploy(endpoint, config)
        except StartupFailure as failure:
            with self._lock:
                if not endpoint.deleted:  # the old deployment never stopped serving
                    endpoint.status, endpoint.modified = "InService", now()
                    endpoint.failure_reason, endpoint.pending = str(failure), None
            return
        with self._lock:  # the swap: requests lease a deployment under this same lock
            old = endpoint.deployment
            if endpoint.deleted:
                old = deployment
            else:
                endpoint.deployment, endpoint.config_name = deployment, config.name
                endpoint.status, endpoint.modified, endpoint.pending = "InService", now(), None
        if old is not None:
            old.in_flight.wait_idle(timeout=fleet.INVOCATION_TIMEOUT_SECONDS + 5)
            self._retire(old)

    @operation("UpdateEndpointWeightsAndCapacities")
    def update_endpoint_weights_and_capacities(self, request: dict) -> dict:
        endpoint = self._get_endpoint(request["EndpointName"])
        desired = request["DesiredWeightsAndCapacities"]
        with self._lock:
            self._require_in_service(endpoint, "update")
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

    def _scale(self, endpoint: EndpointRecord, deployment: Deployment, desired: list[dict]) -> None:
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
        with self._lock:
            if not endpoint.deleted:
                endpoint.status, endpoint.modified, endpoint.failure_reason = "InService", now(), failure

    def _require_in_service(self, endpoint: EndpointRecord, verb: str) -> None:
        if endpoint.status == "Failed":
            raise validation_error(
                f'Cannot {verb} failed endpoint "{endpoint.arn}". '
                "DeleteEndpoint is the only operation that can be performed on a failed endpoint."
            )
        if endpoint.status != "InService":
            raise validation_error(f'Cannot {verb} in-progress endpoint "{endpoint.arn}".')

    @operation("DeleteEndpoint")
    def delete_endpoint(self, request: dict) -> dict:
        endpoint = self._get_endpoint(request["EndpointName"])
        with self._lock:
            if endpoint.status == "Deleting":
                raise validation_error(f'Cannot delete in-progress endpoint "{endpoint.arn}".')
            endpoint.status, endpoint.modified, endpoint.deleted = "Deleting", now(), True
            key = endpoint.name.lower()
            deployments = [deployment for deployment, owner in self._live.items() if owner == key]

        def delete() -> None:
            for deployment in deployments:
                self._retire(deployment)
            with self._lock:
                if self._endpoints.get(endpoint.name.lower()) is endpoint:
                    del self._endpoints[endpoint.name.lower()]
            self.context.tags.forget(endpoint.arn)

        in_background(f"delete-{endpoint.name}", delete)
        return {}

    @operation("DescribeEndpoint")
    def describe_endpoint(self, request: dict) -> dict:
        endpoint = self._get_endpoint(request["EndpointName"])
        with self._lock:
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
                response["PendingDeploymentSummary"] = {
                    "EndpointConfigName": endpoint.pending.config.name,
                    "ProductionVariants": [
                        {
                            "VariantName": v["VariantName"],
                            "DesiredInstanceCount": v["InitialInstanceCount"],
                            "DesiredWeight": float(v.get("InitialVariantWeight", 1.0)),
                            "InstanceType": v["InstanceType"],
                        }
                        for v in endpoint.pending.config.variants
                    ],
                    "StartTime": endpoint.pending.started,
                }
        return response

    @operation("ListEndpoints")
    def list_endpoints(self, request: dict) -> dict:
        with self._lock:
            records = list(self._endpoints.values())
        page, token = _page(request, records, endpoints=True)
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

    # -- deployments ----------------------------------------------------------------------------------
    def _deploy(self, endpoint: EndpointRecord, config: EndpointConfigRecord) -> Deployment:
        """Bring a config up for an endpoint: unpack each model, start every instance, wait for /ping."""
        directory = self._root / endpoint.name.lower() / f"{config.name.lower()}-{secrets.token_hex(4)}"
        with self._lock:
            models = [self._models.get(variant["ModelName"].lower()) for variant in config.variants]
        fleets = []
        for variant, model in zip(config.variants, models, strict=True):
            if model is None:
                raise StartupFailure(f'Could not find model "{self._arn("model", variant["ModelName"])}".')
            fleets.append(self._fleet(endpoint, variant, model, directory / variant["VariantName"] / "model"))
        deployment = Deployment(config.name, directory, fleets)
        with self._lock:
            if endpoint.deleted or self._closing.is_set():
                raise StartupFailure("endpoint deleted while deploying")
            self._live[deployment] = endpoint.name.lower()
        try:
            for fleet, model in zip(fleets, models, strict=True):
                assert model is not None
                prepare_model_dir(self.context, model.container, fleet.model_dir)
            deployment.start()
        except StartupFailure:
            self._retire(deployment)
            raise
        return deployment

    def _retire(self, deployment: Deployment) -> None:
        deployment.stop()
        with self._lock:
            self._live.pop(deployment, None)

    def _fleet(
        self, endpoint: EndpointRecord, variant: dict, model: ModelRecord, model_dir: Path
    ) -> VariantFleet:
        container = model.container
        environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
        environment.setdefault("SAGEMAKER_PROGRAM", "inference.py")
        environment["SAGEMAKER_ENDPOINT_NAME"] = endpoint.name

        def new_instance() -> ModelInstance:
            return ModelInstance(
                self.context, endpoint.name, variant["VariantName"], model_dir, environment
            )

        return VariantFleet(
            name=variant["VariantName"],
            image=container["Image"],
            model_dir=model_dir,
            weight=float(variant.get("InitialVariantWeight", 1.0)),
            desired_count=int(variant["InitialInstanceCount"]),
            startup_timeout=float(
                variant.get("ContainerStartupHealthCheckTimeoutInSeconds") or DEFAULT_STARTUP_TIMEOUT_SECONDS
            ),
            new_instance=new_instance,
            deployed_at=now(),
        )

    # -- for the runtime and the autoscaler ---------------------------------------------------------
    @contextlib.contextmanager
    def serving(self, endpoint_name: str) -> Iterator[tuple[str, Deployment]]:
        """(endpoint name, the deployment answering for it now), leased for the block so an
        update's swap waits for it; SageMaker Runtime's ValidationError if nothing serves."""
        with self._lock:
            endpoint = self._endpoints.get(endpoint_name.lower())
            deployment = (
                endpoint.deployment if endpoint and endpoint.status in ("InService", "Updating") else None
            )
            if endpoint is None or deployment is None:
                raise AwsError(
                    "ValidationError",
                    f"Endpoint {endpoint_name} of account {self.context.account_id} not found.",
                )
            deployment.in_flight.enter()  # under the lock, so an update's swap cannot slip in between
        try:
            yield endpoint.name, deployment
        finally:
            deployment.in_flight.exit()

    # -- supervision ---------------------------------------------------------------------------------
    def _supervise(self) -> None:
        """Restart model servers that died; their variant routes around them meanwhile."""
        with self._lock:
            deployments = [e.deployment for e in self._endpoints.values() if e.deployment and not e.deleted]
        for deployment in deployments:
            for variant in deployment.variants.values():
                for instance in list(variant.instances):
                    restarting = instance.instance_id in self._restarting
                    if instance.exited and not instance.stopped and not restarting:
                        self._restarting.add(instance.instance_id)
                        variant.unroute(instance)
                        in_background(
                            f"restart-{instance.instance_id}",
                            lambda v=variant, i=instance: self._restart(v, i),
                        )

    # -- Application Auto Scaling ------------------------------------------------------------------
    def _autoscale(self) -> None:
        """Honour scalable targets and target-tracking policies registered in Application Auto Scaling.

        Each variant with a scalable target is kept within [MinCapacity, MaxCapacity]; with a
        SageMakerVariantInvocationsPerInstance policy, the desired count is
        ceil(invocations in the last minute / TargetValue), applied after the policy's cooldowns.
        """
        with self._lock:
            if not self._endpoints:
                return
        self._autoscaling = self._autoscaling or self.context.client("application-autoscaling")
        self._autoscale_once(self._autoscaling)

    def _autoscale_once(self, autoscaling: Any) -> None:
        targets = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        for target in targets:
            found = re.fullmatch(r"endpoint/([^/]+)/variant/([^/]+)", target["ResourceId"])
            if not found or target.get("ScalableDimension") != "sagemaker:variant:DesiredInstanceCount":
                continue
            endpoint_name, variant_name = found.groups()
            with self._lock:
                endpoint = self._endpoints.get(endpoint_name.lower())
                if endpoint is None or endpoint.status != "InService" or endpoint.deployment is None:
                    continue
                deployment = endpoint.deployment
            variant = deployment.variants.get(variant_name)
            if variant is None:
                continue
            policies = autoscaling.describe_scaling_policies(
                ServiceNamespace="sagemaker", ResourceId=target["ResourceId"]
            )["ScalingPolicies"]
            desired = self._desired_count(endpoint_name, variant, target, policies)
            if desired != variant.desired_count:
                log.info(
                    "autoscaling %s/%s: %d -> %d", endpoint_name, variant_name, variant.desired_count, desired
                )
                self.update_endpoint_weights_and_capacities(
                    {
                        "EndpointName": endpoint.name,
                        "DesiredWeightsAndCapacities": [
                            {"VariantName": variant.name, "DesiredInstanceCount": desired}
                        ],
                    }
                )

    def _desired_count(self, endpoint: str, variant: VariantFleet, target: dict, policies: list[dict]) -> int:
        current = variant.desired_count
        desired = current
        key = (endpoint.lower(), variant.name)
        for policy in policies:
            tracking = policy.get("TargetTrackingScalingPolicyConfiguration") or {}
            metric = (tracking.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
            if policy.get("PolicyType") != "TargetTrackingScaling" or metric != INVOCATIONS_PER_INSTANCE:
                continue
            wanted = max(1, math.ceil(variant.invocations_last_minute() / float(tracking["TargetValue"])))
            elapsed = time.monotonic() - self._last_scaled.get(key, 0.0)
            may_scale_out = wanted > current and elapsed >= float(tracking.get("ScaleOutCooldown", 300))
            may_scale_in = (
                wanted < current
                and not tracking.get("DisableScaleIn", False)
                and elapsed >= float(tracking.get("ScaleInCooldown", 300))
            )
            if may_scale_out or may_scale_in:
                desired = wanted
        desired = min(max(desired, int(target["MinCapacity"])), int(target["MaxCapacity"]))
        if desired != current:
            self._last_scaled[key] = time.monotonic()
        return desired

    def _restart(self, variant: VariantFleet, instance: ModelInstance) -> None:
        log.warning(
            "model server %s of %s exited; restarting it", instance.instance_id, instance.endpoint_name
        )
        try:
            instance.start(variant.startup_timeout)
            variant.reroute(instance)
        except StartupFailure as failure:
            log.error("could not restart %s: %s", instance.instance_id, failure)
        finally:
            self._restarting.discard(instance.instance_id)

    def shutdown(self) -> None:
        """Stop every model server (each in its own process group, so nothing is orphaned)."""
        self._closing.set()
        with self._lock:
            for endpoint in self._endpoints.values():
                endpoint.deleted = True
            deployments = list(self._live)
        for deployment in deployments:
            self._retire(deployment)


# -- helpers -------------------------------------------------------------------------------------------
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


_BY_NAME_OR_CREATION: dict[str, Callable[[Any], Any]] = {
    "Name": lambda r: r.name,
    "CreationTime": lambda r: r.created,
}


def _page(request: dict, records: list, endpoints: bool = False) -> tuple[list, dict]:
    """List* paging over models and endpoint configs, or endpoints (which also have a
    status and a last-modified time to filter and sort by)."""
    if not endpoints:
        return list_page(
            request,
            records,
            name=lambda r: r.name,
            times={"CreationTime": lambda r: r.created},
            sort_keys=_BY_NAME_OR_CREATION,
        )
    return list_page(
        request,
        records,
        name=lambda r: r.name,
        status=lambda r: r.status,
        times={"CreationTime": lambda r: r.created, "LastModifiedTime": lambda r: r.modified},
        sort_keys={**_BY_NAME_OR_CREATION, "Status": lambda r: r.status},
    )
