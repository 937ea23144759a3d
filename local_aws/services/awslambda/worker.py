"""One Lambda execution environment: import the handler once, then serve invocations.

Started by :mod:`local_aws.services.awslambda.pool` as ``python -I worker.py --request-fd R
--response-fd W`` with the function's environment (``_HANDLER``, ``LAMBDA_TASK_ROOT``, ...).
It imports only the standard library, so the handler sees nothing of local_aws.

Protocol, over two pipes, one invocation at a time: a frame is a 4-byte big-endian header
length, a JSON header, a 4-byte body length and the body bytes.

* worker -> service, once: ``{"type": "ready", "init_duration_ms": ...}`` or
  ``{"type": "init_error"}`` with the error document as body (then the worker exits).
* service -> worker: ``{"request_id", "deadline_ms", "invoked_function_arn", "log_path",
  "client_context"}`` with the event as body.
* worker -> service: ``{"type": "result" | "error", "duration_ms", "max_memory_used_mb"}``
  with the JSON response (or error document) as body.

Everything the handler writes to fd 1 and 2 during an invocation lands in that
invocation's ``log_path``, child processes included; the service ships it to CloudWatch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import resource
import struct
import sys
import time
import traceback
from typing import Any

LENGTH_PREFIX = struct.Struct(">I")


# -- framing ---------------------------------------------------------------------------------
def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None when the other side closed the pipe."""
    parts = []
    for _ in range(2):
        size = _read_exactly(fd, LENGTH_PREFIX.size)
        if size is None:
            return None
        data = _read_exactly(fd, LENGTH_PREFIX.unpack(size)[0])
        if data is None:
            return None
        parts.append(data)
    return json.loads(parts[0]), parts[1]


def write_frame(fd: int, header: dict[str, Any], body: bytes) -> None:
    encoded = json.dumps(header).encode()
    data = LENGTH_PREFIX.pack(len(encoded)) + encoded + LENGTH_PREFIX.pack(len(body)) + body
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# -- what the handler sees ---------------------------------------------------------------------
class ClientContext:
    """``context.client_context`` from the ``X-Amz-Client-Context`` header (mobile SDK shape)."""

    def __init__(self, document: dict[str, Any]):
        self.client = document.get("client")
        self.custom = document.get("custom")
        self.env = document.get("env")


class LambdaContext:
    """The ``context`` argument of the Python runtime."""

    def __init__(self, header: dict[str, Any]):
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.invoked_function_arn = header["invoked_function_arn"]
        self.aws_request_id = header["request_id"]
        self.identity = None
        client_context = header.get("client_context")
        self.client_context = ClientContext(client_context) if client_context else None
        self._deadline_ms = int(header["deadline_ms"])

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


_REQUEST_ID = _RequestIdFilter()


def _configure_logging() -> None:
    """The runtime's root handler: ``[LEVEL]\\ttime\\trequest id\\tmessage`` to stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.addFilter(_REQUEST_ID)
    logging.Formatter.converter = time.gmtime
    logging.getLogger().addHandler(handler)


# -- errors in the runtime's shape -------------------------------------------------------------
def error_document(
    error: BaseException, error_type: str | None = None, message: str | None = None
) -> dict[str, Any]:
    frames = traceback.extract_tb(error.__traceback__)
    return {
        "errorMessage": message if message is not None else str(error),
        "errorType": error_type or type(error).__name__,
        "requestId": _REQUEST_ID.request_id,
        "stackTrace": traceback.format_list(frames),
    }


def _log_error(document: dict[str, Any]) -> None:
    """The runtime prints unhandled errors to the log as ``[ERROR] Type: message`` + traceback."""
    lines = [
        f"[ERROR] {document['errorType']}: {document['errorMessage']}",
        "Traceback (most recent call last):",
    ]
    lines += [frame.rstrip("\n") for frame in document["stackTrace"]]
    print("\n".join(lines), flush=True)


def load_handler(handler: str) -> Any:
    """Import ``path/to/module.function`` as the Python runtime does; raise a documented error."""
    module_path, dot, function_name = handler.rpartition(".")
    if not dot or not module_path or not function_name:
        raise _InitError(
            "Runtime.MalformedHandlerName",
            f"Bad handler '{handler}': not enough values to unpack (expected 2, got 1)",
        )
    module_name = module_path.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {error}"
        ) from error
    except SyntaxError as error:
        raise _InitError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {error}"
        ) from error
    function = getattr(module, function_name, None)
    if function is None:
        raise _InitError(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"
        )
    return function


class _InitError(Exception):
    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


# -- the loop ----------------------------------------------------------------------------------
def _redirect_output(path: str) -> None:
    """Point fd 1 and 2 (and so print, logging and child processes) at ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _max_memory_used_mb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux reports KiB


def invoke(handler: Any, header: dict[str, Any], body: bytes) -> tuple[str, bytes]:
    """Run one invocation: ("result", JSON) or ("error", error document)."""
    _REQUEST_ID.request_id = header["request_id"]
    try:
        event = json.loads(body) if body else {}
        result = handler(event, LambdaContext(header))
    except Exception as error:
        document = error_document(error)
        _log_error(document)
        return "error", json.dumps(document).encode()
    try:
        return "result", json.dumps(result).encode()
    except (TypeError, ValueError) as error:
        document = error_document(error, "Runtime.MarshalError", f"Unable to marshal response: {error}")
        _log_error(document)
        return "error", json.dumps(document).encode()


def serve(request_fd: int, response_fd: int) -> int:
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    os.chdir(task_root)
    sys.path.insert(0, task_root)
    _configure_logging()
    started = time.monotonic()
    try:
        handler = load_handler(os.environ["_HANDLER"])
    except _InitError as error:
        document = error_document(error, error.error_type)
        document["stackTrace"] = []
        _log_error(document)
        write_frame(response_fd, {"type": "init_error"}, json.dumps(document).encode())
        return 1
    except Exception as error:  # module-level code of the handler raised
        document = error_document(error)
        _log_error(document)
        write_frame(response_fd, {"type": "init_error"}, json.dumps(document).encode())
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    write_frame(response_fd, {"type": "ready", "init_duration_ms": (time.monotonic() - started) * 1000}, b"")
    idle_output = os.open(os.devnull, os.O_WRONLY)
    while True:
        frame = read_frame(request_fd)
        if frame is None:
            return 0
        header, body = frame
        _redirect_output(header["log_path"])
        began = time.monotonic()
        kind, payload = invoke(handler, header, body)
        duration_ms = (time.monotonic() - began) * 1000
        sys.stdout.flush()
        sys.stderr.flush()
        # Between invocations nothing is collected, as in Lambda's frozen environment.
        os.dup2(idle_output, 1)
        os.dup2(idle_output, 2)
        reply = {"type": kind, "duration_ms": duration_ms, "max_memory_used_mb": _max_memory_used_mb()}
        write_frame(response_fd, reply, payload)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--request-fd", type=int, required=True)
    parser.add_argument("--response-fd", type=int, required=True)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    return serve(args.request_fd, args.response_fd)


if __name__ == "__main__":
    sys.exit(main())
