"""Invoke: the handler really runs, in a worker of the version the call designates.

RequestResponse answers the handler's result (or its error document with FunctionError),
Event queues the call (202), DryRun only checks (204). Each invocation's log (START, the
handler's output, END, REPORT) goes to CloudWatch Logs and, with LogType Tail, its last
4 KB into the response. Concurrency beyond the function's limit is TooManyRequestsException.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from local_aws.protocol.api import operation
from local_aws.protocol.errors import AwsError
from local_aws.services.awslambda.api import not_ready
from local_aws.services.awslambda.environments import ExecutionEnvironments
from local_aws.services.awslambda.pool import Outcome, WorkerInitError
from local_aws.services.awslambda.state import (
    DEFAULT_CONCURRENCY_LIMIT,
    LATEST,
    Function,
    LambdaState,
    Target,
    VersionRecord,
    timestamp,
)

log = logging.getLogger("local_aws.lambda")

MAX_SYNC_REQUEST_BYTES = 6 * 1024 * 1024  # 6291456, as AWS words it
MAX_SYNC_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # AWS reports 6291556 for responses
MAX_ASYNC_REQUEST_BYTES = 1024 * 1024
LOG_TAIL_BYTES = 4096
ASYNC_SLOT_WAIT_SECONDS = 60.0


def invalid_content(message: str) -> AwsError:
    return AwsError("InvalidRequestContentException", message)


class Invocations:
    def __init__(self, state: LambdaState, environments: ExecutionEnvironments):
        self._state = state
        self._environments = environments
        self._logs = state.context.logs
        self._events = ThreadPoolExecutor(
            max_workers=DEFAULT_CONCURRENCY_LIMIT, thread_name_prefix="lambda-event"
        )

    @operation("Invoke")
    def invoke(self, request: dict[str, Any]) -> dict[str, Any]:
        invocation_type = request.get("InvocationType", "RequestResponse")
        limit = MAX_ASYNC_REQUEST_BYTES if invocation_type == "Event" else MAX_SYNC_REQUEST_BYTES
        event = request.get("Payload", b"")
        if len(event) > limit:
            raise AwsError(
                "RequestTooLargeException",
                f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
            )
        if event.strip():
            try:
                json.loads(event)
            except ValueError as error:
                raise invalid_content(f"Could not parse request body into json: {error}") from error
        client_context = _client_context(request.get("ClientContext"))
        target = self._state.target(request["FunctionName"], request.get("Qualifier"))
        record = self._runnable(target)
        if invocation_type == "DryRun":
            return {"StatusCode": 204}
        invoked_arn = target.function.qualified_arn(target.qualifier)
        if invocation_type == "Event":
            self._events.submit(
                self._invoke_event, target.function, record, invoked_arn, event, client_context
            )
            return {"StatusCode": 202}
        outcome, log_text = self._run(target.function, record, invoked_arn, event, client_context)
        result: dict[str, Any] = {
            "StatusCode": 200,
            "ExecutedVersion": record.version,
            "Payload": outcome.body,
        }
        if outcome.kind == "result" and len(outcome.body) > MAX_SYNC_RESPONSE_BYTES:
            outcome = Outcome(kind="error")
            too_large = {
                "errorMessage": "Response payload size exceeded maximum allowed payload size "
                f"({MAX_SYNC_RESPONSE_BYTES} bytes).",
                "errorType": "Function.ResponseSizeTooLarge",
            }
            result["Payload"] = json.dumps(too_large).encode()
        if outcome.kind != "result":
            result["FunctionError"] = "Unhandled"
        if request.get("LogType") == "Tail":
            result["LogResult"] = base64.b64encode(log_text.encode()[-LOG_TAIL_BYTES:]).decode()
        return result

    def shutdown(self) -> None:
        self._events.shutdown(wait=False, cancel_futures=True)

    # -- running --------------------------------------------------------------------------------
    def _runnable(self, target: Target) -> VersionRecord:
        """The version an invocation runs: the alias's (weighted) choice, the Active $LATEST."""
        function = target.function
        with self._state.lock:
            record = target.record
            if target.alias is not None and target.alias.additional_weights:
                version, weight = next(iter(target.alias.additional_weights.items()))
                if random.random() < weight:  # noqa: S311 - traffic shifting, not security
                    record = function.versions[version]
            if record.version == LATEST:
                if function.serving is None:
                    raise not_ready(function.latest.state)
                return function.serving
            if record.state != "Active":
                raise not_ready(record.state)
            return record

    def _invoke_event(
        self, function: Function, record: VersionRecord, invoked_arn: str, event: bytes, client_context: Any
    ) -> None:
        """Asynchronous invocation: wait for a free slot (Lambda queues events), run, log the result."""
        deadline = time.monotonic() + ASYNC_SLOT_WAIT_SECONDS
        while not self._environments.stopping.is_set():
            try:
                outcome, _ = self._run(function, record, invoked_arn, event, client_context)
            except AwsError as error:
                if error.code != "TooManyRequestsException" or time.monotonic() > deadline:
                    log.warning("event invocation of %s failed: %s", invoked_arn, error.message)
                    return
                time.sleep(0.2)
                continue
            if outcome.kind != "result":
                log.warning(
                    "event invocation of %s ended with %s: %s", invoked_arn, outcome.kind, outcome.body[:500]
                )
            return

    def _run(
        self, function: Function, record: VersionRecord, invoked_arn: str, event: bytes, client_context: Any
    ) -> tuple[Outcome, str]:
        """Run one invocation in a worker of the version; (outcome, log text for LogType=Tail)."""
        with self._state.lock:
            if self._environments.stopping.is_set():
                raise AwsError("ServiceException", "local_aws is shutting down.", 503)
            if function.in_flight >= function.concurrency_limit:
                reserved = function.reserved_concurrency is not None
                raise AwsError(
                    "TooManyRequestsException",
                    f"Rate Exceeded. ({function.name} runs at most {function.concurrency_limit} at once)",
                    # Reason is what AWS's SDKs and retry logic read of a throttle.
                    fields={
                        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"
                        if reserved
                        else "ConcurrentInvocationLimitExceeded"
                    },
                )
            function.in_flight += 1
        try:
            return self._run_in_worker(
                function, record, invoked_arn, event, client_context, str(uuid.uuid4())
            )
        finally:
            with self._state.lock:
                function.in_flight -= 1

    def _run_in_worker(
        self,
        function: Function,
        record: VersionRecord,
        invoked_arn: str,
        event: bytes,
        client_context: Any,
        request_id: str,
    ) -> tuple[Outcome, str]:
        config = record.config
        pool = self._environments.pool(function, record)
        try:
            worker, cold = pool.acquire()
        except WorkerInitError as error:
            return self._init_failed(function, record, error, request_id)
        init_text = self._environments.ship_init_log(function, worker) if cold else ""
        log_path = function.directory / ".invocations" / f"{request_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        header = {
            "request_id": request_id,
            "deadline_ms": int(time.time() * 1000 + config.timeout * 1000),
            "invoked_function_arn": invoked_arn,
            "log_path": str(log_path),
            "client_context": client_context,
        }
        try:
            outcome = worker.invoke(header, event, config.timeout)
        finally:
            pool.release(worker)
        handler_output = log_path.read_text(errors="replace") if log_path.exists() else ""
        log_path.unlink(missing_ok=True)
        outcome, status_line = _settle(outcome, request_id, config.timeout)
        report = "\t".join(
            [
                f"REPORT RequestId: {request_id}",
                f"Duration: {outcome.duration_ms:.2f} ms",
                f"Billed Duration: {max(1, math.ceil(outcome.duration_ms))} ms",
                f"Memory Size: {config.memory_size} MB",
                f"Max Memory Used: {outcome.max_memory_used_mb} MB",
            ]
        )
        if cold:
            report += f"\tInit Duration: {worker.init_duration_ms:.2f} ms"
        if status_line:
            report += f"\tStatus: {outcome.kind}"
        text = f"START RequestId: {request_id} Version: {record.version}\n{handler_output}"
        if text and not text.endswith("\n"):
            text += "\n"
        text += (status_line + "\n" if status_line else "") + f"END RequestId: {request_id}\n{report}\n"
        self._logs.put_text(function.log_group, worker.log_stream, text)
        return outcome, init_text + text

    def _init_failed(
        self, function: Function, record: VersionRecord, error: WorkerInitError, request_id: str
    ) -> tuple[Outcome, str]:
        """The handler could not be imported: the invocation answers the runtime's init error."""
        lines = [error.log_text.rstrip("\n"), f"START RequestId: {request_id} Version: {record.version}"]
        lines += [
            f"END RequestId: {request_id}",
            f"REPORT RequestId: {request_id}\tStatus: error\tError Type: {error.document.get('errorType')}",
        ]
        text = "\n".join(line for line in lines if line) + "\n"
        self._logs.put_text(function.log_group, self._environments.new_log_stream(record.version), text)
        return Outcome(kind="error", body=json.dumps(error.document).encode()), text


def _client_context(header: str | None) -> dict[str, Any] | None:
    if not header:
        return None
    try:
        document = json.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError) as error:
        raise invalid_content("Client context must be a valid Base64-encoded JSON object.") from error
    if not isinstance(document, dict):
        raise invalid_content("Client context must be a valid Base64-encoded JSON object.")
    return document


def _settle(outcome: Outcome, request_id: str, timeout: int) -> tuple[Outcome, str]:
    """Turn a timeout or a crash into the error document Lambda returns; plus a log line."""
    if outcome.kind == "timeout":
        message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
        document = {"errorType": "Sandbox.Timedout", "errorMessage": message}
        settled = Outcome(kind="timeout", body=json.dumps(document).encode(), duration_ms=timeout * 1000.0)
        return settled, f"{timestamp()} {request_id} Task timed out after {timeout:.2f} seconds"
    if outcome.kind == "crash":
        message = f"RequestId: {request_id} Error: Runtime exited with error: {outcome.exit_status}"
        document = {"errorType": "Runtime.ExitError", "errorMessage": message}
        return Outcome(kind="crash", body=json.dumps(document).encode()), message
    return outcome, ""
