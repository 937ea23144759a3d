"""A SageMaker inference container, without the container.

    python -m local_aws.services.sagemaker.hosting.model_server --model-dir DIR --port 0


It serves the hosting contract on 127.0.0.1 (``GET /ping``, ``POST /invocations``) for a model
directory laid out as SageMaker unpacks ``model.tar.gz`` into ``/opt/ml/model``: the user's
handler module is ``code/<SAGEMAKER_PROGRAM>`` and is called the way the SageMaker PyTorch
serving toolkit (sagemaker-inference-toolkit's ``Transformer``) calls it:

* ``model_fn(model_dir)`` once; ``/ping`` answers 200 only after it returned;
* per request ``input_fn(body, content_type)`` -> ``predict_fn(data, model)`` ->
  ``output_fn(prediction, accept)``, or ``transform_fn(model, body, content_type, accept)``;
  every function may take one extra trailing ``context`` argument (passed ``None`` here);
* missing functions fall back to the PyTorch toolkit's defaults (TorchScript ``model.pt``,
  JSON / CSV / NPY decoding into a tensor, ``model(data)`` under ``no_grad``, encoding to the
  first supported type in ``Accept``);
* ``Accept`` absent or ``*/*`` means ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` (application/json);
  bodies of ``application/json`` and ``text/csv`` arrive as ``str``, others as ``bytes``;
  ``output_fn`` may return ``(body, content_type)``;
* an exception with an integer ``status_code`` (the toolkit's ``BaseInferenceToolkitError``)
  answers that status with its ``message``; anything else answers 500 with ``str(error)``.
  The traceback goes to the log, not the body (the toolkit appends it to the body; callers
  should read the first line of an error body).

If ``model_fn`` fails the process logs the traceback and exits 1, which is how the
endpoint learns that the model cannot load.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import io
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

log = logging.getLogger("local_aws.services.sagemaker.hosting.model_server")

MAX_REQUEST_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints accept at most 6 MB
DEFAULT_ACCEPT = "application/json"
JSON, CSV, NPY = "application/json", "text/csv", "application/x-npy"
UTF8_TYPES = (JSON, CSV)
PORT_ANNOUNCEMENT = "LOCAL_AWS_MODEL_SERVER_PORT="  # stdout line telling the parent which port we got
SLOT_WAIT_SECONDS = 60.0  # a request that cannot start within the invocation timeout is refused


class InferenceFailure(Exception):
    """What a handler raised, reduced to the HTTP answer the toolkit would give."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _status_of(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
        return status
    return None


def _message_of(error: BaseException) -> str:
    message = getattr(error, "message", None)
    return message if isinstance(message, str) and message else str(error) or type(error).__name__


def _call(function: Callable[..., Any], *args: Any) -> Any:
    """Call a handler function with or without the trailing ``context`` argument, as the toolkit does."""
    parameters = inspect.signature(function).parameters
    if len(parameters) == len(args) + 1:
        return function(*args, None)
    return function(*args)


# -- the PyTorch serving toolkit's defaults, for handler modules that leave a function out ------------
def default_model_fn(model_dir: str) -> Any:
    import torch

    directory = Path(model_dir)
    path = directory / "model.pt"
    if not path.exists():
        candidates = [p for p in directory.iterdir() if p.is_file() and p.suffix in (".pt", ".pth")]
        if len(candidates) != 1:
            names = [p.name for p in candidates]
            raise ValueError(f"Exactly one .pth or .pt file is required for PyTorch models: {names}")
        path = candidates[0]
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as error:
        raise RuntimeError(
            f"Failed to load {path}. Please ensure model is saved using torchscript."
        ) from error


def _unsupported(content_type: str) -> ValueError:
    return ValueError(
        f"Content type {content_type} is not supported by this framework. Please implement input_fn "
        "to deserialize the request data or an output_fn to serialize the response."
    )


def default_input_fn(input_data: str | bytes, content_type: str) -> Any:
    import numpy as np
    import torch

    if content_type == JSON:
        return torch.FloatTensor(np.array(json.loads(input_data)))
    if content_type == CSV:
        text = input_data if isinstance(input_data, str) else input_data.decode()
        return torch.FloatTensor(np.genfromtxt(io.StringIO(text), delimiter=","))
    if content_type == NPY:
        raw = input_data if isinstance(input_data, bytes) else input_data.encode()
        return torch.from_numpy(np.load(io.BytesIO(raw), allow_pickle=False))
    raise _unsupported(content_type)


def default_predict_fn(data: Any, model: Any) -> Any:
    import torch

    with torch.no_grad():
        model.eval()
        return model(data)


def default_output_fn(prediction: Any, accept: str) -> str | bytes:
    import numpy as np

    if hasattr(prediction, "detach"):
        prediction = prediction.detach().cpu().numpy().tolist()
    for content_type in accept.replace(" ", "").split(","):
        if content_type == JSON:
            return json.dumps(prediction, default=lambda value: value.tolist())
        if content_type == CSV:
            stream = io.StringIO()
            np.savetxt(stream, np.asarray(prediction), delimiter=",", fmt="%s")
            return stream.getvalue().encode()
        if content_type == NPY:
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(prediction))
            return buffer.getvalue()
    raise _unsupported(accept)


@dataclass
class HandlerFunctions:
    model_fn: Callable[..., Any]
    transform_fn: Callable[..., Any] | None
    input_fn: Callable[..., Any]
    predict_fn: Callable[..., Any]
    output_fn: Callable[..., Any]

    @classmethod
    def from_module(cls, module: Any | None) -> HandlerFunctions:
        def pick(name: str, default: Callable[..., Any]) -> Callable[..., Any]:
            return getattr(module, name, None) or default

        transform_fn = getattr(module, "transform_fn", None)
        if transform_fn and any(getattr(module, n, None) for n in ("input_fn", "predict_fn", "output_fn")):
            raise ValueError(
                "Cannot use transform_fn implementation in conjunction with input_fn, predict_fn, "
                "and/or output_fn implementation"
            )
        return cls(
            model_fn=pick("model_fn", default_model_fn),
            transform_fn=transform_fn,
            input_fn=pick("input_fn", default_input_fn),
            predict_fn=pick("predict_fn", default_predict_fn),
            output_fn=pick("output_fn", default_output_fn),
        )


def load_handler_module(model_dir: Path, program: str) -> Any | None:
    """Import ``code/<program>`` with ``code/`` on sys.path (its own imports resolve there)."""
    code_dir = model_dir / "code"
    module_name = program.removesuffix(".py")
    if (code_dir / "requirements.txt").exists():
        log.info("code/requirements.txt is not installed locally; the serving environment must provide it")
    if code_dir.is_dir() and str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    source = code_dir / program
    if not source.is_file():
        log.info("no handler module %s: using the PyTorch toolkit defaults", module_name)
        return None
    # From its file, not by name: a module of the same name imported earlier must not stand in.
    spec = importlib.util.spec_from_file_location(module_name, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Prediction:
    body: bytes
    content_type: str


class InferenceHandler:
    """The model and the handler functions, loaded once, called by many request threads."""

    def __init__(self, model_dir: Path, program: str, max_concurrency: int, default_accept: str):
        self.model_dir = model_dir
        self.program = program
        self.default_accept = default_accept
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._loaded = threading.Event()
        self._functions: HandlerFunctions | None = None
        self._model: Any = None

    @property
    def ready(self) -> bool:
        return self._loaded.is_set()

    def load(self) -> None:
        functions = HandlerFunctions.from_module(load_handler_module(self.model_dir, self.program))
        self._model = _call(functions.model_fn, str(self.model_dir))
        self._functions = functions
        self._loaded.set()
        log.info("model loaded from %s", self.model_dir)

    def invoke(self, body: bytes, content_type: str, accept: str | None) -> Prediction:
        if not self._slots.acquire(timeout=SLOT_WAIT_SECONDS):
            raise InferenceFailure(503, "All inference workers are busy; retry the request")
        try:
            return self._invoke(body, content_type, accept)
        finally:
            self._slots.release()

    def _invoke(self, body: bytes, content_type: str, accept: str | None) -> Prediction:
        functions = self._functions
        if functions is None:
            raise InferenceFailure(503, "Model is not loaded yet")
        if not accept or accept == "*/*":
            accept = self.default_accept
        data: str | bytes = body.decode("utf-8") if content_type in UTF8_TYPES else body
        try:
            if functions.transform_fn is not None:
                result = _call(functions.transform_fn, self._model, data, content_type, accept)
            else:
                decoded = _call(functions.input_fn, data, content_type)
                prediction = _call(functions.predict_fn, decoded, self._model)
                result = _call(functions.output_fn, prediction, accept)
        except Exception as error:
            log.error("inference failed:\n%s", traceback.format_exc())
            raise InferenceFailure(_status_of(error) or 500, _message_of(error)) from error
        response_type = accept
        if isinstance(result, tuple):
            result, response_type = result[0], result[1]
        return Prediction(_as_bytes(result), response_type)


def _as_bytes(result: Any) -> bytes:
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result)
    if isinstance(result, str):
        return result.encode("utf-8")
    return json.dumps(result, default=lambda value: value.tolist()).encode()


def make_app(handler: InferenceHandler) -> Callable[..., Any]:
    """The WSGI app of the container: /ping and /invocations (and 404 for anything else)."""

    def app(environ: dict, start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        request.max_content_length = MAX_REQUEST_BYTES
        if request.path == "/ping" and request.method == "GET":
            response = Response("", status=200) if handler.ready else Response("loading", status=503)
        elif request.path == "/invocations" and request.method == "POST":
            response = _invocations(handler, request)
        else:
            response = Response("not found", status=404, content_type="text/plain")
        return response(environ, start_response)

    return app


def _invocations(handler: InferenceHandler, request: Request) -> Response:
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return Response(
            f"request body exceeds {MAX_REQUEST_BYTES} bytes", status=413, content_type="text/plain"
        )
    content_type = request.headers.get("Content-Type", "")
    try:
        prediction = handler.invoke(body, content_type, request.headers.get("Accept"))
    except InferenceFailure as failure:
        return Response(failure.message, status=failure.status, content_type="text/plain")
    return Response(prediction.body, status=200, content_type=prediction.content_type)


def serve(model_dir: Path, host: str, port: int, program: str, max_concurrency: int) -> int:
    default_accept = os.environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or DEFAULT_ACCEPT
    handler = InferenceHandler(model_dir, program, max_concurrency, default_accept)
    server = make_server(host, port, make_app(handler), threaded=True)
    exit_code = 0

    def load() -> None:
        nonlocal exit_code
        try:
            handler.load()
        except BaseException as error:
            log.error("model_fn failed: %s\n%s", error, traceback.format_exc())
            exit_code = 1
            server.shutdown()

    print(f"{PORT_ANNOUNCEMENT}{server.server_port}", flush=True)
    # Listen first, load second: /ping says 503 while the model loads, as a real container does.
    threading.Thread(target=load, name="model-load", daemon=True).start()
    log.info("model server on http://%s:%d for %s", host, server.server_port, model_dir)
    server.serve_forever()
    return exit_code


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__)
    parser.add_argument("--model-dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--program", default=os.environ.get("SAGEMAKER_PROGRAM") or "inference.py")
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS") or os.cpu_count() or 1),
        help="inferences running at once (TorchServe's default is one worker per CPU)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    sys.exit(
        serve(args.model_dir.resolve(), args.host, args.port, args.program, max(1, args.max_concurrency))
    )


if __name__ == "__main__":
    main()
