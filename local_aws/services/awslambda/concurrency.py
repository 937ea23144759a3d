"""Reserved concurrency (a cap per function) and provisioned concurrency (warm environments).

PutProvisionedConcurrencyConfig answers IN_PROGRESS at once; a background task starts the
workers and turns the config READY (or FAILED with the init error, as Lambda reports it).
Moving an alias that has a config provisions the alias's new version.
"""

from __future__ import annotations

import time
from typing import Any

from local_aws.infra.background import in_background
from local_aws.protocol.api import operation
from local_aws.protocol.errors import AwsError
from local_aws.services.awslambda.api import invalid_parameter
from local_aws.services.awslambda.documents import page, provisioned_document
from local_aws.services.awslambda.environments import ExecutionEnvironments
from local_aws.services.awslambda.pool import WorkerInitError
from local_aws.services.awslambda.state import (
    DEFAULT_CONCURRENCY_LIMIT,
    LATEST,
    Function,
    LambdaState,
    ProvisionedConcurrency,
    timestamp,
)

ACCOUNT_CONCURRENCY = 1000  # AWS's default account limit, of which 100 stay unreserved
MIN_UNRESERVED_CONCURRENCY = 100
PUBLISH_WAIT_SECONDS = 600.0


def config_not_found() -> AwsError:
    return AwsError(
        "ProvisionedConcurrencyConfigNotFoundException",
        "No Provisioned Concurrency Config found for this function",
    )


class Concurrency:
    def __init__(self, state: LambdaState, environments: ExecutionEnvironments):
        self._state = state
        self._environments = environments

    # -- provisioned ------------------------------------------------------------------------------
    @operation("PutProvisionedConcurrencyConfig")
    def put_provisioned_concurrency_config(self, request: dict[str, Any]) -> dict[str, Any]:
        target = self._state.target(request["FunctionName"], request["Qualifier"])
        function = target.function
        requested = request["ProvisionedConcurrentExecutions"]
        if target.record.version == LATEST:
            raise invalid_parameter(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
            )
        with self._state.lock:
            others = sum(c.requested for q, c in function.provisioned.items() if q != target.qualifier)
            if others + requested > function.concurrency_limit:
                raise invalid_parameter(
                    f"Requested Provisioned Concurrency ({others + requested} for the function) should not "
                    f"be greater than its concurrency limit ({function.concurrency_limit}: reserved, "
                    f"or local_aws's cap of {DEFAULT_CONCURRENCY_LIMIT})."
                )
            config = ProvisionedConcurrency(
                qualifier=target.qualifier or "", requested=requested, version=target.record.version
            )
            function.provisioned[config.qualifier] = config
            document = self._document(function, config)
        self.start(function, config)
        return document

    @operation("GetProvisionedConcurrencyConfig")
    def get_provisioned_concurrency_config(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        with self._state.lock:
            config = function.provisioned.get(request["Qualifier"])
            if config is None:
                raise config_not_found()
            return self._document(function, config)

    @operation("ListProvisionedConcurrencyConfigs")
    def list_provisioned_concurrency_configs(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        with self._state.lock:
            documents = [
                {"FunctionArn": function.qualified_arn(q), **self._document(function, c)}
                for q, c in function.provisioned.items()
            ]
        return page(documents, request, "ProvisionedConcurrencyConfigs")

    @operation("DeleteProvisionedConcurrencyConfig")
    def delete_provisioned_concurrency_config(self, request: dict[str, Any]) -> None:
        function = self._state.function(request["FunctionName"])
        with self._state.lock:
            if function.provisioned.pop(request["Qualifier"], None) is None:
                raise config_not_found()
        self._environments.sync_provisioned(function)

    # -- reserved ---------------------------------------------------------------------------------
    @operation("PutFunctionConcurrency")
    def put_function_concurrency(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        reserved = request["ReservedConcurrentExecutions"]
        if reserved > ACCOUNT_CONCURRENCY - MIN_UNRESERVED_CONCURRENCY:
            raise invalid_parameter(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED_CONCURRENCY}]."
            )
        with self._state.lock:
            provisioned = sum(c.requested for c in function.provisioned.values())
            if reserved < provisioned:
                raise invalid_parameter(
                    f"ReservedConcurrentExecutions ({reserved}) must be at least the provisioned concurrency "
                    f"of the function ({provisioned})."
                )
            function.reserved_concurrency = reserved
        return {"ReservedConcurrentExecutions": reserved}

    @operation("GetFunctionConcurrency")
    def get_function_concurrency(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        with self._state.lock:
            reserved = function.reserved_concurrency
        return {} if reserved is None else {"ReservedConcurrentExecutions": reserved}

    @operation("DeleteFunctionConcurrency")
    def delete_function_concurrency(self, request: dict[str, Any]) -> None:
        function = self._state.function(request["FunctionName"])
        with self._state.lock:
            function.reserved_concurrency = None

    # -- provisioning -----------------------------------------------------------------------------
    def moved(self, function: Function, qualifier: str, version: str) -> ProvisionedConcurrency | None:
        """The alias ``qualifier`` now points at ``version``: a new config replaces its old one (which
        cancels the old provisioning run). Call with the lock held, then :meth:`start` the result."""
        config = function.provisioned.get(qualifier)
        if config is None:
            return None
        fresh = ProvisionedConcurrency(qualifier=qualifier, requested=config.requested, version=version)
        function.provisioned[qualifier] = fresh
        return fresh

    def start(self, function: Function, config: ProvisionedConcurrency) -> None:
        self._environments.sync_provisioned(function)
        in_background(f"lambda-provision-{function.name}", lambda: self._provision(function, config))

    def _provision(self, function: Function, config: ProvisionedConcurrency) -> None:
        """Start warm workers for the version until the config is READY (or FAILED)."""
        with self._state.lock:
            record = function.versions.get(config.version)
        deadline = time.monotonic() + PUBLISH_WAIT_SECONDS
        while record is not None and record.state == "Pending" and time.monotonic() < deadline:
            time.sleep(0.05)  # a version being published: its code is still being copied
        status, reason = "READY", ""
        if record is None or record.state != "Active":
            status, reason = "FAILED", f"Version {config.version} is not active."
        else:
            try:
                pool = self._environments.pool(function, record)
                with self._state.lock:
                    wanted = function.provisioned_for(config.version)
                for worker in pool.warm(wanted):
                    self._environments.ship_init_log(function, worker)
            except WorkerInitError as error:
                status = "FAILED"
                reason = "FUNCTION_ERROR_INIT_FAILURE: {}: {}".format(
                    error.document.get("errorType"), error.document.get("errorMessage")
                )
                stream = self._environments.new_log_stream(config.version)
                self._state.context.logs.put_text(function.log_group, stream, error.log_text)
        with self._state.lock:
            if function.provisioned.get(config.qualifier) is config:
                config.status, config.status_reason = status, reason
                config.last_modified = timestamp()

    def _document(self, function: Function, config: ProvisionedConcurrency) -> dict[str, Any]:
        return provisioned_document(config, self._environments.size(function.name, config.version))
