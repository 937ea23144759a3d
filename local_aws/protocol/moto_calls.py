"""Calling moto in this process, the way a client would, for services that extend a moto API.

A service serving an operation of an API moto keeps (say PutScalingPolicy, to create the
alarms AWS creates) lets moto store the resource and then adds what moto lacks. It reaches
moto through :class:`MotoCalls`: the request is serialized by botocore for the API's protocol,
handed to moto's WSGI application in-process (not through this server, which would route it
back to the same handler) and the answer parsed by botocore, so the handler sees exactly what
a boto3 client would: a result dict, or :class:`~local_aws.protocol.errors.AwsError` with
moto's code, message and status.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from werkzeug.test import EnvironBuilder, run_wsgi_app

from local_aws.protocol.api import service_model
from local_aws.protocol.errors import AwsError

_CREDENTIAL = "Credential=local/20250101/{region}/{service}/aws4_request"


class MotoCalls:
    """moto's APIs in-process: ``call("application-autoscaling", "PutScalingPolicy", {...})``."""

    def __init__(self, moto_app: Any, region: str):
        self._app = moto_app
        self._region = region

    def call(self, api: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        model = service_model(api)
        operation_model = model.operation_model(operation)
        protocol = model.resolved_protocol  # what a boto3 client speaks (CloudWatch: json, not cbor)
        request = create_serializer(protocol, include_validation=True).serialize_to_request(
            params, operation_model
        )
        headers = {key: str(value) for key, value in request["headers"].items()}
        # moto finds the service from the SigV4 credential scope, as our router does.
        scope = _CREDENTIAL.format(region=self._region, service=model.signing_name)
        headers["Authorization"] = f"AWS4-HMAC-SHA256 {scope}, SignedHeaders=host, Signature=local"
        query = request.get("query_string") or {}
        environ = EnvironBuilder(
            path=request["url_path"],
            method=request["method"],
            headers=headers,
            data=request["body"],
            query_string=urllib.parse.urlencode(query, doseq=True) if isinstance(query, dict) else query,
        ).get_environ()
        body_chunks, status, response_headers = run_wsgi_app(self._app, environ)
        try:
            body = b"".join(body_chunks)
        finally:
            if hasattr(body_chunks, "close"):
                body_chunks.close()
        status_code = int(status.split()[0])
        parsed = create_parser(protocol).parse(
            {"status_code": status_code, "headers": dict(response_headers), "body": body},
            operation_model.output_shape,
        )
        if status_code >= 300:
            error = parsed.get("Error") or {}
            raise AwsError(error.get("Code") or str(status_code), error.get("Message") or "", status_code)
        parsed.pop("ResponseMetadata", None)
        return parsed
