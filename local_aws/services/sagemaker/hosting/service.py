"""SageMaker hosting: models, endpoint configs and endpoints, really served.

An endpoint is model-server processes (:mod:`.model_server`), one per instance
(:mod:`.instance`), grouped by variant (:mod:`.fleet`) and brought up per endpoint config
(:mod:`.deployments`). The operations live in :mod:`.models`, :mod:`.endpoint_configs` and
:mod:`.endpoints` over one :class:`~.records.HostingState`. InvokeEndpoint is SageMaker
Runtime's (:mod:`local_aws.services.sagemaker_runtime`), autoscaling Application Auto
Scaling's (:mod:`local_aws.services.application_autoscaling`): both come here through
:meth:`HostingService.serving` and :meth:`HostingService.variant_capacity`. The invocation
metrics the runtime records are published to CloudWatch by :mod:`.metrics`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from local_aws.protocol.api import Handler, handlers_of
from local_aws.protocol.errors import AwsError
from local_aws.services.base import Context, Service
from local_aws.services.sagemaker.api import SAGEMAKER
from local_aws.services.sagemaker.hosting.deployments import Deployments
from local_aws.services.sagemaker.hosting.endpoint_configs import EndpointConfigs
from local_aws.services.sagemaker.hosting.endpoints import Endpoints
from local_aws.services.sagemaker.hosting.fleet import Deployment
from local_aws.services.sagemaker.hosting.metrics import EndpointMetrics
from local_aws.services.sagemaker.hosting.models import Models
from local_aws.services.sagemaker.hosting.records import HostingState


@dataclass(frozen=True)
class VariantCapacity:
    """What target tracking reads of an InService variant."""

    endpoint_name: str
    variant_name: str
    desired_count: int


class HostingService(Service):
    api = SAGEMAKER

    def __init__(self, context: Context):
        super().__init__(context)
        self.state = HostingState(context)
        self.deployments = Deployments(self.state)
        self.metrics = EndpointMetrics(context.clock, lambda: self._cloudwatch)
        self._apis = (
            Models(self.state),
            EndpointConfigs(self.state),
            Endpoints(self.state, self.deployments),
        )

    @functools.cached_property
    def _cloudwatch(self) -> Any:
        return self.context.client("cloudwatch")

    def handlers(self) -> dict[str, Handler]:
        return {name: handler for api in self._apis for name, handler in handlers_of(api).items()}

    @contextlib.contextmanager
    def serving(self, endpoint_name: str) -> Iterator[tuple[str, Deployment]]:
        """(endpoint name, the deployment answering this request), leased for the block so an
        update's swap waits for it; SageMaker Runtime's ValidationError if nothing serves. While a
        blue/green update shifts traffic, the request goes to the new fleet or the old one."""
        with self.state.lock:
            endpoint = self.state.endpoints.get(endpoint_name.lower())
            serving = endpoint is not None and endpoint.status in ("InService", "Updating", "RollingBack")
            deployment = endpoint.deployment if serving and endpoint is not None else None
            if deployment is not None and endpoint is not None and endpoint.rollout is not None:
                deployment = endpoint.rollout.pick() or deployment
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

    def variant_capacity(self, endpoint_name: str, variant_name: str) -> VariantCapacity | None:
        """The variant's instance count, if its endpoint is InService (scaling waits for the rest)."""
        with self.state.lock:
            endpoint = self.state.endpoints.get(endpoint_name.lower())
            if endpoint is None or endpoint.status != "InService" or endpoint.deployment is None:
                return None
            variant = endpoint.deployment.variants.get(variant_name)
        if variant is None:
            return None
        return VariantCapacity(endpoint.name, variant.name, variant.desired_count)

    def instance_pids(self, endpoint_name: str) -> set[int]:
        """PIDs of the model servers behind the endpoint (for tests and diagnostics)."""
        with self.state.lock:
            endpoint = self.state.endpoints.get(endpoint_name.lower())
            rollout = endpoint.rollout if endpoint else None
            deployments = [endpoint.deployment if endpoint else None, rollout.green if rollout else None]
        variants = [v for d in deployments if d is not None for v in d.variants.values()]
        return {i.pid for variant in variants for i in variant.instances if i.pid is not None}

    def shutdown(self) -> None:
        with self.state.lock:
            for endpoint in self.state.endpoints.values():
                endpoint.deleted = True
        self.deployments.shutdown()
        self.metrics.shutdown()
