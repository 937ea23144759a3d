"""Endpoint configs brought up as model-server processes, supervised while they serve.

A deployment is one endpoint config running: every variant's instances started from its
model data and healthy on /ping. Every deployment with processes is tracked (by endpoint),
so deleting an endpoint or stopping local_aws stops them all. A model server that dies is
taken out of routing and restarted in the background.
"""

from __future__ import annotations

import logging
import secrets
import threading
from pathlib import Path
from typing import Any

from local_aws.infra.background import every, in_background
from local_aws.services.base import now
from local_aws.services.sagemaker.hosting.fleet import Deployment, VariantFleet
from local_aws.services.sagemaker.hosting.instance import ModelInstance, StartupFailure
from local_aws.services.sagemaker.hosting.model_data import prepare_model_dir
from local_aws.services.sagemaker.hosting.records import (
    EndpointConfigRecord,
    EndpointRecord,
    HostingState,
    ModelRecord,
)

log = logging.getLogger("local_aws.hosting")

DEFAULT_STARTUP_TIMEOUT_SECONDS = 600.0  # ContainerStartupHealthCheckTimeoutInSeconds when not given
SUPERVISE_INTERVAL_SECONDS = 0.5


class Deployments:
    def __init__(self, state: HostingState):
        self._state = state
        self._live: dict[Deployment, str] = {}  # every deployment with processes -> its endpoint's key
        self._restarting: set[str] = set()
        self.closing = threading.Event()
        every(SUPERVISE_INTERVAL_SECONDS, "hosting-supervisor", self._supervise, self.closing)

    def deploy(self, endpoint: EndpointRecord, config: EndpointConfigRecord) -> Deployment:
        """Bring a config up for an endpoint: unpack each model, start every instance, wait for /ping."""
        directory = self._state.root / endpoint.name.lower() / f"{config.name.lower()}-{secrets.token_hex(4)}"
        with self._state.lock:
            models = [self._state.models.get(variant["ModelName"].lower()) for variant in config.variants]
        fleets = []
        for variant, model in zip(config.variants, models, strict=True):
            if model is None:
                raise StartupFailure(
                    f'Could not find model "{self._state.arn("model", variant["ModelName"])}".'
                )
            fleets.append(self._fleet(endpoint, variant, model, directory / variant["VariantName"] / "model"))
        deployment = Deployment(config.name, directory, fleets)
        with self._state.lock:
            if endpoint.deleted or self.closing.is_set():
                raise StartupFailure("endpoint deleted while deploying")
            self._live[deployment] = endpoint.name.lower()
        try:
            for fleet, model in zip(fleets, models, strict=True):
                assert model is not None
                prepare_model_dir(self._state.context, model.container, fleet.model_dir)
            deployment.start()
        except StartupFailure:
            self.retire(deployment)
            raise
        return deployment

    def retire(self, deployment: Deployment) -> None:
        deployment.stop()
        with self._state.lock:
            self._live.pop(deployment, None)

    def of(self, endpoint: EndpointRecord) -> list[Deployment]:
        """Every deployment of the endpoint with processes (the live one, one being brought up)."""
        with self._state.lock:
            return [deployment for deployment, key in self._live.items() if key == endpoint.name.lower()]

    def shutdown(self) -> None:
        """Stop every model server (each in its own process group, so nothing is orphaned)."""
        self.closing.set()
        with self._state.lock:
            deployments = list(self._live)
        for deployment in deployments:
            self.retire(deployment)

    def _fleet(
        self, endpoint: EndpointRecord, variant: dict[str, Any], model: ModelRecord, model_dir: Path
    ) -> VariantFleet:
        container = model.container
        environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
        environment.setdefault("SAGEMAKER_PROGRAM", "inference.py")
        environment["SAGEMAKER_ENDPOINT_NAME"] = endpoint.name

        def new_instance() -> ModelInstance:
            return ModelInstance(
                self._state.context, endpoint.name, variant["VariantName"], model_dir, environment
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

    def _supervise(self) -> None:
        """Restart model servers that died; their variant routes around them meanwhile."""
        with self._state.lock:
            deployments = [
                e.deployment for e in self._state.endpoints.values() if e.deployment and not e.deleted
            ]
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
