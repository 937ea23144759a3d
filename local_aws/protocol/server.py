"""One HTTP endpoint speaking the AWS protocols; local_aws's own services or moto behind it.

A request belongs to the API whose botocore model its SigV4 signature names (the
credential scope's service) and that claims it: a json API by its ``X-Amz-Target`` prefix,
a rest API by a route (SageMaker and SageMaker Runtime share the signing name
``sagemaker``). APIs no running service of local_aws serves go to moto, in this process.

An API moto keeps but a service of ours extends (``Api(moto_serves_the_rest=True)``) is claimed
the same way; its operations without a handler of ours go to moto unread.

For an API of ours, every request goes the same way::

    route -> handler? -> size limit -> parse -> validate -> handler(dict) -> serialize
      400 UnknownOperationException   the model has no such operation
      501 NotImplemented              the model has it; local_aws does not implement it
                                      (not the caller's mistake, and not worth retrying)
      413 / malformed / validation    the caller's mistake, in the API's own codes
      500 InternalFailure             anything else a handler raises: a bug, logged
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from local_aws.infra.clock import Clock
from local_aws.protocol.api import Api, Handler, Reply, service_model
from local_aws.protocol.errors import AwsError, error_response
from local_aws.protocol.moto_calls import MotoCalls
from local_aws.protocol.parsing import MalformedRequest, parse_json_request, parse_rest_request
from local_aws.protocol.routing import JsonRouter, RestRouter
from local_aws.protocol.serializing import json_response, rest_response
from local_aws.protocol.validation import require_valid
from local_aws.services import SERVICES
from local_aws.services.base import Context

log = logging.getLogger("local_aws")

HEALTH_PATH = "/_local_aws/health"


def signing_service(request: Request) -> str | None:
    """The service of the SigV4 credential scope, e.g. ``.../us-east-1/sagemaker/aws4_request``."""
    auth = request.headers.get("Authorization", "")
    try:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
        return scope.split("/")[3]
    except IndexError:
        return None


class ServedApi:
    """An API of ours at run time: its model, its router and the handlers the services gave it."""

    def __init__(self, api: Api):
        self.api = api
        self.model = service_model(api.name)
        self.protocol = self.model.resolved_protocol  # what boto3 speaks to it
        if self.protocol not in ("json", "rest-json"):
            raise ValueError(f"local_aws speaks json and rest-json, not {api.name}'s {self.protocol}")
        self.router: JsonRouter | RestRouter = (
            JsonRouter(self.model) if self.protocol == "json" else RestRouter(self.model)
        )
        self.handlers: dict[str, Handler] = {}

    def claim(self, request: Request) -> tuple[Any, dict[str, str]] | None:
        """(operation model or None if unknown, URI labels) when this API owns the request."""
        target = request.headers.get("X-Amz-Target")
        if isinstance(self.router, JsonRouter):
            return (self.router.match(target), {}) if self.router.claims(target) else None
        if target:
            return None
        return self.router.match(request.method, _raw_path(request), request.args)

    def handle(self, operation: Any, labels: dict[str, str], request: Request) -> Response:
        api = self.api
        try:
            body = _read_body(request, api, operation.name)
            handler = self.handlers.get(operation.name)
            if handler is None:
                raise AwsError(
                    "NotImplemented",
                    f"local_aws does not implement {self.model.metadata['serviceId']} {operation.name}",
                    501,
                )
            if self.protocol == "json":
                params = parse_json_request(operation, body)
            else:
                params = parse_rest_request(operation, labels, request.args, request.headers, body)
            require_valid(operation.input_shape, params, api.validation_error)
            result = handler(params) or {}
            extra_headers = {}
            if isinstance(result, Reply):
                result, extra_headers = result.result, result.headers
            if self.protocol == "json":
                response = json_response(self.model.metadata.get("jsonVersion", "1.1"), operation, result)
            else:
                response = rest_response(operation, result)
            response.headers.update(extra_headers)
            return response
        except MalformedRequest as error:
            return error_response(self.model, AwsError(api.malformed_request, str(error)))
        except AwsError as error:
            return error_response(self.model, error)
        except Exception as error:  # a bug in local_aws: say so, never blame the caller
            log.exception("%s %s failed inside local_aws", api.name, operation.name)
            message = f"local_aws internal error in {operation.name}: {type(error).__name__}: {error}"
            return error_response(self.model, AwsError(api.internal_error, message, 500))

    def leaves_to_moto(self, operation: Any) -> bool:
        """An operation of a moto-kept API that no service of ours serves."""
        return self.api.moto_serves_the_rest and operation.name not in self.handlers

    def unknown(self, request: Request) -> Response:
        _drain(request)
        what = request.headers.get("X-Amz-Target") or f"{request.method} {request.path}"
        message = f"{self.model.metadata['serviceId']} has no operation {what}"
        return error_response(self.model, AwsError("UnknownOperationException", message, 400))


def _raw_path(request: Request) -> str:
    """The path as sent, still percent-encoded (werkzeug's ``path`` has decoded ``%2F``)."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        return urllib.parse.urlsplit(raw).path
    return urllib.parse.quote(request.path)


def _read_body(request: Request, api: Api, operation: str) -> bytes:
    """The body, refused unread past the API's front-end limit (as AWS refuses it)."""
    limit = api.max_request_bytes
    declared = request.content_length
    body = request.stream.read(limit + 1) if declared is None or declared <= limit else b""
    if (declared or 0) > limit or len(body) > limit:
        _drain(request)
        raise api.request_too_large(operation, limit)
    return body


def _drain(request: Request) -> None:
    """Read what is left of the body: unread, it would be taken for the next request on the connection."""
    while request.stream.read(1 << 20):
        pass


class LocalAws:
    """The WSGI application: local_aws's services for their APIs, moto for everything else."""

    def __init__(self, context: Context, service_classes: dict[str, str] = SERVICES):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.context = context
        self.moto = DomainDispatcherApplication(create_backend_app)
        context.moto = MotoCalls(self.moto, context.region)
        self.apis: dict[str, ServedApi] = {}
        for name, dotted in service_classes.items():
            module_name, class_name = dotted.split(":")
            service = getattr(importlib.import_module(module_name), class_name)(context)
            context.services[name] = service
            if service.api is not None:
                served = self.apis.setdefault(service.api.name, ServedApi(service.api))
                assert served.api == service.api, f"{name} declares {service.api.name} differently"
                overlap = set(served.handlers) & set(service.handlers())
                assert not overlap, f"{name} serves operations another service serves: {overlap}"
                served.handlers.update(service.handlers())

    def routing_table(self) -> dict[str, list[str]]:
        """The operations local_aws serves itself, by botocore service name."""
        return {name: sorted(served.handlers) for name, served in self.apis.items()}

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        if request.path == HEALTH_PATH:
            health = {"status": "ok", "services": sorted(self.context.services)}
            return Response(json.dumps(health), content_type="application/json")(environ, start_response)
        signing = signing_service(request)
        ours = [served for served in self.apis.values() if served.model.signing_name == signing]
        if not ours:
            return self.moto(environ, start_response)
        for served in ours:
            claimed = served.claim(request)
            if claimed is not None:
                operation, labels = claimed
                if operation is None:
                    return served.unknown(request)(environ, start_response)
                if served.leaves_to_moto(operation):
                    return self.moto(environ, start_response)
                return served.handle(operation, labels, request)(environ, start_response)
        if all(served.api.moto_serves_the_rest for served in ours):
            return self.moto(environ, start_response)  # e.g. a CloudWatch request in CBOR or query
        # Nothing claimed it: answer in the protocol the request looks like it speaks.
        wants_json = bool(request.headers.get("X-Amz-Target"))
        fallback = next((s for s in ours if isinstance(s.router, JsonRouter) == wants_json), ours[0])
        return fallback.unknown(request)(environ, start_response)

    def shutdown(self) -> None:
        for service in self.context.services.values():
            try:
                service.shutdown()
            except Exception:
                log.exception("shutting down %s", type(service).__name__)
        self.context.logs.close()  # after the services: their last lines are still shipped


class LocalAwsServer:
    """local_aws in a background thread: ``with LocalAwsServer(state_dir) as server: server.url``."""

    def __init__(
        self,
        state_dir: Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        service_classes: dict[str, str] = SERVICES,
        clock: Clock | None = None,
    ):
        self.state_dir = Path(state_dir)
        self.clock = clock or Clock.from_environment()
        self.host = host
        self.port = port
        self.service_classes = service_classes
        self.app: LocalAws | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> LocalAwsServer:
        from moto.moto_server.werkzeug_app import MotoRequestHandler

        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Bind first so the services know the URL they call back on (port 0 = any free port).
        self._server = make_server(
            self.host, self.port, None, threaded=True, request_handler=MotoRequestHandler
        )
        context = Context(
            state_dir=self.state_dir,
            endpoint_url=f"http://{self.host}:{self._server.server_port}",
            clock=self.clock,
        )
        self.app = LocalAws(context, self.service_classes)
        self._server.app = self.app
        self._thread = threading.Thread(target=self._server.serve_forever, name="local_aws", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.app is not None:
            self.app.shutdown()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> LocalAwsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
