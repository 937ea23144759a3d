"""InvokeEndpoint: one request to one instance of the endpoint's live deployment.

The deployment is leased for the whole request, so an UpdateEndpoint swapping configs drains
it before stopping it. Instances are tried in round-robin order; one that does not answer
(it crashed) is taken out of routing for the hosting supervisor to restart, and the next is
tried. Errors are SageMaker Runtime's: ``ValidationError`` for an unknown endpoint or
variant, ``ModelError`` (424) carrying the container's status and message or its timeout,
``ServiceUnavailable`` (503, retried by botocore) when no instance answers.
"""

from __future__ import annotations

import http.client
from typing import Any

from local_aws.protocol.api import operation
from local_aws.protocol.errors import AwsError
from local_aws.services.base import Service
from local_aws.services.sagemaker.hosting.instance import ModelInstance
from local_aws.services.sagemaker_runtime.api import RUNTIME

TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container primary. Review the latency "
    "metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)
# Request headers the container sees besides Content-Type and Accept.
PASSED_HEADERS = {
    "CustomAttributes": "X-Amzn-SageMaker-Custom-Attributes",
    "InferenceId": "X-Amzn-SageMaker-Inference-Id",
}


class RuntimeService(Service):
    api = RUNTIME

    @operation("InvokeEndpoint")
    def invoke_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        hosting = self.context.services["hosting"]
        with hosting.serving(request["EndpointName"]) as (endpoint_name, deployment):
            target = request.get("TargetVariant")
            variant = deployment.pick_variant(target)
            if variant is None:
                raise AwsError(
                    "ValidationError",
                    f"Target variant {target} does not exist for endpoint {endpoint_name} of account "
                    f"{self.context.account_id}.",
                )
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
                    try:
                        status, reply_headers, reply = instance.invoke(request["Body"], headers)
                    except TimeoutError as error:
                        raise self._model_error(endpoint_name, instance, None, TIMEOUT_MESSAGE) from error
                    except (OSError, http.client.HTTPException):
                        variant.unroute(instance)  # it crashed: the supervisor restarts it; try the next
                        continue
                if status != 200:
                    raise self._model_error(endpoint_name, instance, status, reply.decode("utf-8", "replace"))
                result = {
                    "Body": reply,
                    "ContentType": reply_headers.get("Content-Type", "application/json"),
                    "InvokedProductionVariant": variant.name,
                }
                if attributes := reply_headers.get("X-Amzn-SageMaker-Custom-Attributes"):
                    result["CustomAttributes"] = attributes
                return result
            raise AwsError(
                "ServiceUnavailable",
                f"No instance of production variant {variant.name} of endpoint {endpoint_name} is "
                "available. Try your call again.",
            )

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
