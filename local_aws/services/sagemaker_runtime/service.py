"""InvokeEndpoint: one request to one instance of the endpoint's live deployment.

The deployment is leased for the whole request, so an UpdateEndpoint swapping configs drains
it before stopping it. Instances are tried in round-robin order; one that does not answer
(it crashed) is taken out of routing for the hosting supervisor to restart, and the next is
tried. Errors are SageMaker Runtime's: ``ValidationError`` for an unknown endpoint or
variant, ``ModelError`` (424) carrying the container's status and message or its timeout,
``ServiceUnavailable`` (503, retried by botocore) when no instance answers.

Every request that reached a variant is recorded for the endpoint's CloudWatch metrics
(:mod:`local_aws.services.sagemaker.hosting.metrics`). The answer carries
``InvokedProductionVariant`` and, local_aws's own test-only header, ``x-local-aws-endpoint-config``:
the endpoint config of the fleet that answered (the old or the new one during a blue/green update).
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass
from typing import Any

from local_aws.protocol.api import Reply, operation
from local_aws.protocol.errors import AwsError
from local_aws.services.base import Service
from local_aws.services.sagemaker.hosting.fleet import VariantFleet
from local_aws.services.sagemaker.hosting.instance import ModelInstance
from local_aws.services.sagemaker.hosting.metrics import Invocation
from local_aws.services.sagemaker_runtime.api import RUNTIME

FLEET_HEADER = "x-local-aws-endpoint-config"  # test-only: which endpoint config's fleet answered
TIMED_OUT = 599  # what the metrics count a timeout as (a 5XX: the container gave no answer)

TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container primary. Review the latency "
    "metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)
# Request headers the container sees besides Content-Type and Accept.
PASSED_HEADERS = {
    "CustomAttributes": "X-Amzn-SageMaker-Custom-Attributes",
    "InferenceId": "X-Amzn-SageMaker-Inference-Id",
}


@dataclass(frozen=True)
class _Answer:
    instance: ModelInstance
    status: int | None  # None: no answer within the invocation timeout
    seconds: float  # how long the container took (ModelLatency)
    headers: dict[str, str]
    body: bytes


class RuntimeService(Service):
    api = RUNTIME

    @operation("InvokeEndpoint")
    def invoke_endpoint(self, request: dict[str, Any]) -> Reply:
        hosting = self.context.services["hosting"]
        started = time.perf_counter()
        with hosting.serving(request["EndpointName"]) as (endpoint_name, deployment):
            target = request.get("TargetVariant")
            variant = deployment.pick_variant(target)
            if variant is None:
                raise AwsError(
                    "ValidationError",
                    f"Target variant {target} does not exist for endpoint {endpoint_name} of account "
                    f"{self.context.account_id}.",
                )
            instances = variant.current_count
            answer = self._invoke(variant, request)
            status = 503 if answer is None else answer.status or TIMED_OUT
            model_seconds = None if answer is None else answer.seconds
            invocation = Invocation(status, instances, model_seconds, time.perf_counter() - started)
            hosting.metrics.record(endpoint_name, variant.name, invocation)
            if answer is None:
                raise AwsError(
                    "ServiceUnavailable",
                    f"No instance of production variant {variant.name} of endpoint {endpoint_name} is "
                    "available. Try your call again.",
                )
            if answer.status is None:
                raise self._model_error(endpoint_name, answer.instance, None, TIMEOUT_MESSAGE)
            if answer.status != 200:
                original = answer.body.decode("utf-8", "replace")
                raise self._model_error(endpoint_name, answer.instance, answer.status, original)
            result = {
                "Body": answer.body,
                "ContentType": answer.headers.get("Content-Type", "application/json"),
                "InvokedProductionVariant": variant.name,
            }
            if attributes := answer.headers.get("X-Amzn-SageMaker-Custom-Attributes"):
                result["CustomAttributes"] = attributes
            return Reply(result, {FLEET_HEADER: deployment.config_name})

    @staticmethod
    def _invoke(variant: VariantFleet, request: dict[str, Any]) -> _Answer | None:
        """The first answer of the variant's instances in round-robin order (a crashed one is
        taken out of routing and the next tried); None when none answers."""
        headers = {"Content-Type": request.get("ContentType") or "application/octet-stream"}
        if accept := request.get("Accept"):
            headers["Accept"] = accept
        for member, header in PASSED_HEADERS.items():
            if member in request:
                headers[header] = request[member]
        for instance in variant.candidates():
            with variant.leased(instance) as routable:
                if not routable:
                    continue
                sent = time.perf_counter()
                try:
                    status, reply_headers, reply = instance.invoke(request["Body"], headers)
                except TimeoutError:
                    return _Answer(instance, None, time.perf_counter() - sent, {}, b"")
                except (OSError, http.client.HTTPException):
                    variant.unroute(instance)  # it crashed: the supervisor restarts it; try the next
                    continue
                return _Answer(instance, status, time.perf_counter() - sent, reply_headers, reply)
        return None

    def _model_error(
        self, endpoint_name: str, instance: ModelInstance, status: int | None, original: str
    ) -> AwsError:
        """ModelError: the container answered an error (``status``) or nothing in time (``None``)."""
        kind = "client" if status is not None and status < 500 else "server"
        region, account = self.context.region, self.context.account_id
        message = (
            f'Received {kind} error ({status or 0}) from primary with message "{original}". '
            f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logEventViewer:"
            f"group=/aws/sagemaker/Endpoints/{endpoint_name} in account {account} for more information."
        )
        fields: dict[str, Any] = {"OriginalMessage": original, "LogStreamArn": instance.log_stream_arn}
        if status is not None:
            fields["OriginalStatusCode"] = status
        return AwsError("ModelError", message, fields=fields)
