"""One HTTP endpoint speaking the AWS wire protocols the pipeline uses.

Requests are routed on the service their SigV4 signature names:
SageMaker (control plane and runtime) and Lambda are served by local_aws's own
services, which really train and really serve; everything else (S3, IAM, STS,
CloudWatch, Logs, Application Auto Scaling) goes to moto, in this same process.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from local_aws.core import (
    AwsError,
    Context,
    Route,
    json_protocol_error_response,
    json_response,
    rest_error_response,
    validation_error,
)

log = logging.getLogger("local_aws")

# The services local_aws implements itself, as "module:Class"; each takes the Context.
SERVICE_CLASSES = {
    "training": "local_aws.services.sagemaker.training.service:TrainingService",
    "tuning": "local_aws.services.sagemaker.tuning.service:TuningService",
    "hosting": "local_aws.services.sagemaker.hosting.service:HostingService",
    "lambda": "local_aws.services.awslambda.service:LambdaService",
}

HEALTH_PATH = "/_local_aws/health"


def signing_service(request: Request) -> tuple[str | None, str | None]:
    """(service, region) from the SigV4 credential scope, e.g. ``.../us-east-1/sagemaker/aws4_request``."""
    auth = request.headers.get("Authorization", "")
    try:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
        _, _, region, service, _ = scope.split("/")
        return service, region
    except (IndexError, ValueError):
        return None, None


class LocalAws:
    """The WSGI application."""

    def __init__(self, context: Context, service_classes: dict[str, str] = SERVICE_CLASSES):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        self.context = context
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.sagemaker_actions: dict[str, Any] = {
            "AddTags": self._add_tags,
            "ListTags": self._list_tags,
            "DeleteTags": self._delete_tags,
        }
        self.routes: list[Route] = []
        for name, dotted in service_classes.items():
            module_name, class_name = dotted.split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name != module_name:
                    raise
                log.warning("local_aws service %s is not available: %s", name, error)
                continue
            service = getattr(module, class_name)(context)
            context.services[name] = service
            if hasattr(service, "sagemaker_actions"):
                self.sagemaker_actions.update(service.sagemaker_actions())
            if hasattr(service, "routes"):
                self.routes.extend(service.routes())

    # -- SageMaker tags are shared by every resource kind -------------------------------
    def _add_tags(self, request: dict) -> dict:
        self.context.tags.add(request["ResourceArn"], request.get("Tags"))
        return {"Tags": request.get("Tags", [])}

    def _list_tags(self, request: dict) -> dict:
        return {"Tags": self.context.tags.get(request["ResourceArn"])}

    def _delete_tags(self, request: dict) -> dict:
        self.context.tags.delete(request["ResourceArn"], request.get("TagKeys", []))
        return {}

    # -- dispatch ---------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        if request.path == HEALTH_PATH:
            return json_response({"status": "ok", "services": sorted(self.context.services)})(
                environ, start_response
            )
        service, _ = signing_service(request)
        for route in self.routes:
            groups = route.match(service or "", request)
            if groups is not None:
                return self._call_rest(route, request, groups)(environ, start_response)
        if service == "sagemaker":
            return self._call_sagemaker(request)(environ, start_response)
        if service == "lambda":
            error = AwsError(
                "UnsupportedOperation",
                f"local_aws does not implement Lambda {request.method} {request.path}",
                status=400,
            )
            return rest_error_response(error)(environ, start_response)
        return self.moto(environ, start_response)

    def _call_rest(self, route: Route, request: Request, groups: dict[str, str]) -> Response:
        try:
            return route.handler(request, **groups)
        except AwsError as error:
            return rest_error_response(error)
        except Exception as error:  # a bug here must still answer, in AWS's shape
            log.exception("%s %s failed", request.method, request.path)
            return rest_error_response(AwsError("ServiceException", f"local_aws: {error}", status=500))

    def _call_sagemaker(self, request: Request) -> Response:
        target = request.headers.get("X-Amz-Target", "")
        action = target.partition(".")[2]
        handler = self.sagemaker_actions.get(action)
        try:
            if handler is None:
                raise AwsError(
                    "UnknownOperationException",
                    f"local_aws does not implement SageMaker action {action or '(none)'}",
                )
            try:
                body = json.loads(request.get_data() or b"{}")
            except ValueError as error:
                raise validation_error(f"Request body is not JSON: {error}") from error
            return json_response(handler(body), content_type="application/x-amz-json-1.1")
        except AwsError as error:
            return json_protocol_error_response(error)
        except KeyError as error:
            return json_protocol_error_response(validation_error(f"Missing required parameter {error}"))
        except Exception as error:
            log.exception("SageMaker %s failed", action)
            return json_protocol_error_response(
                AwsError("InternalFailure", f"local_aws: {action}: {error}", status=500)
            )

    def shutdown(self) -> None:
        for service in self.context.services.values():
            if hasattr(service, "shutdown"):
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
        service_classes: dict[str, str] = SERVICE_CLASSES,
    ):
        self.state_dir = Path(state_dir)
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
            state_dir=self.state_dir, endpoint_url=f"http://{self.host}:{self._server.server_port}"
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
