"""Functions: Create/Get/List/Delete and the two updates (code, configuration).

Functions go Pending -> Active and updates InProgress -> Successful in the background, once
the code is unpacked, so botocore's waiters are the way to wait, exactly as on AWS.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import urllib.parse
from dataclasses import replace
from typing import Any

from local_aws.infra.background import in_background
from local_aws.protocol.api import operation
from local_aws.services.awslambda.api import conflict, invalid_parameter
from local_aws.services.awslambda.code import latest_dir, store_package, unpack
from local_aws.services.awslambda.documents import configuration, page
from local_aws.services.awslambda.environments import ExecutionEnvironments
from local_aws.services.awslambda.state import (
    LATEST,
    CodeConfig,
    Function,
    LambdaState,
    VersionRecord,
    require_idle,
    require_revision,
)
from local_aws.services.awslambda.versions import Versions

log = logging.getLogger("local_aws.lambda")

MAX_ENVIRONMENT_BYTES = 4096
ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/(?:[\w+=,.@/-]*/)?(?P<name>[\w+=,.@-]{1,64})$")
RESERVED_ENVIRONMENT_KEYS = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)
ENVIRONMENT_REFUSED = (
    "Lambda was unable to configure your environment variables because the environment variables "
    "you have provided"
)
# Accepted and echoed back: they change nothing about how code runs on one machine.
ECHOED_FIELDS = ("VpcConfig", "DeadLetterConfig", "KMSKeyArn", "TracingConfig")
UNSUPPORTED_FIELDS = (
    "Layers",
    "FileSystemConfigs",
    "ImageConfig",
    "CodeSigningConfigArn",
    "CapacityProviderConfig",
)


class Functions:
    def __init__(self, state: LambdaState, environments: ExecutionEnvironments, versions: Versions):
        self._state = state
        self._environments = environments
        self._versions = versions

    # -- operations ---------------------------------------------------------------------------
    @operation("CreateFunction")
    def create_function(self, request: dict[str, Any]) -> dict[str, Any]:
        name, qualifier = self._state.parse_reference(request["FunctionName"])
        if qualifier:
            raise invalid_parameter(
                f"CreateFunction takes an unqualified name, not {request['FunctionName']}."
            )
        with self._state.lock:
            if name in self._state.functions:
                raise conflict(f"Function already exist: {name}")
        _reject_unsupported(request)
        if request.get("Runtime") is None or request.get("Handler") is None:
            raise invalid_parameter(
                "Runtime and Handler are mandatory parameters for functions created with deployment packages."
            )
        _check_runtime(request["Runtime"])
        role = self._check_role(request["Role"])
        environment = _environment(request)
        directory = self._state.root / name
        package, sha, size = store_package(self._state, directory, request["Code"])
        config = CodeConfig(
            runtime=request["Runtime"],
            handler=request["Handler"],
            role=role,
            timeout=request.get("Timeout", 3),
            memory_size=request.get("MemorySize", 128),
            environment=environment,
            code_sha256=sha,
            code_size=size,
            package=package,
            description=request.get("Description", ""),
            architectures=tuple(request.get("Architectures") or ("x86_64",)),
            ephemeral_storage=(request.get("EphemeralStorage") or {}).get("Size", 512),
            echoed={key: request[key] for key in ECHOED_FIELDS if request.get(key)},
        )
        latest = VersionRecord(version=LATEST, config=config, code_dir=latest_dir(directory, config))
        function = Function(
            name=name,
            arn=self._state.context.arn("lambda", f"function:{name}"),
            directory=directory,
            latest=latest,
            tags=dict(request.get("Tags") or {}),
        )
        with self._state.lock:
            if name in self._state.functions:
                raise conflict(f"Function already exist: {name}")
            self._state.functions[name] = function
            published = self._versions.publish(function, None)[0] if request.get("Publish") else None
            document = configuration(function, published or latest)
        in_background(f"lambda-create-{name}", lambda: self._activate(function, latest, published))
        return document

    @operation("GetFunction")
    def get_function(self, request: dict[str, Any]) -> dict[str, Any]:
        target = self._state.target(request["FunctionName"], request.get("Qualifier"))
        function = target.function
        with self._state.lock:
            document: dict[str, Any] = {
                "Configuration": configuration(function, target.record, target.qualifier),
                "Code": {"RepositoryType": "S3", "Location": target.record.config.package.as_uri()},
                "Tags": dict(function.tags),
            }
            if function.reserved_concurrency is not None:
                document["Concurrency"] = {"ReservedConcurrentExecutions": function.reserved_concurrency}
        return document

    @operation("GetFunctionConfiguration")
    def get_function_configuration(self, request: dict[str, Any]) -> dict[str, Any]:
        target = self._state.target(request["FunctionName"], request.get("Qualifier"))
        with self._state.lock:
            return configuration(target.function, target.record, target.qualifier)

    @operation("ListFunctions")
    def list_functions(self, request: dict[str, Any]) -> dict[str, Any]:
        everything = request.get("FunctionVersion") == "ALL"
        with self._state.lock:
            documents = []
            for function in sorted(self._state.functions.values(), key=lambda f: f.name):
                documents.append(configuration(function, function.latest))
                if everything:
                    documents += [configuration(function, v) for v in function.versions.values()]
        return page(documents, request, "Functions")

    @operation("DeleteFunction")
    def delete_function(self, request: dict[str, Any]) -> dict[str, Any]:
        target = self._state.target(request["FunctionName"], request.get("Qualifier"))
        function = target.function
        if target.alias is not None:
            raise invalid_parameter(
                "Deletion of aliases is not supported by DeleteFunction; use DeleteAlias."
            )
        if target.qualifier == LATEST:
            raise invalid_parameter("$LATEST version cannot be deleted without deleting the function.")
        if target.qualifier is not None:
            self._versions.delete(function, target.record.version)
        else:
            with self._state.lock:
                self._state.functions.pop(function.name, None)
            self._environments.close(function.name)
            with function.code_lock:
                shutil.rmtree(function.directory, ignore_errors=True)
        return {"StatusCode": 204}  # the model says 200; Lambda answers 204 No Content

    @operation("UpdateFunctionCode")
    def update_function_code(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        with self._state.lock:
            require_idle(function)
            require_revision(request, function.latest.revision_id)
        package, sha, size = store_package(self._state, function.directory, request)
        if request.get("DryRun"):
            with self._state.lock:
                return configuration(function, function.latest)
        with self._state.lock:
            require_idle(function)
            config = replace(
                function.latest.config,
                code_sha256=sha,
                code_size=size,
                package=package,
                architectures=tuple(request.get("Architectures") or function.latest.config.architectures),
            )
            latest = self._begin_update(function, config)
            published = self._versions.publish(function, None)[0] if request.get("Publish") else None
            document = configuration(function, published or latest)
        in_background(f"lambda-update-{function.name}", lambda: self._activate(function, latest, published))
        return document

    @operation("UpdateFunctionConfiguration")
    def update_function_configuration(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        _reject_unsupported(request)
        with self._state.lock:
            require_idle(function)
            require_revision(request, function.latest.revision_id)
            current = function.latest.config
        changes: dict[str, Any] = {}
        if "Role" in request:
            changes["role"] = self._check_role(request["Role"])
        if "Runtime" in request:
            _check_runtime(request["Runtime"])
            changes["runtime"] = request["Runtime"]
        if "Environment" in request:
            changes["environment"] = _environment(request)
        if "EphemeralStorage" in request:
            changes["ephemeral_storage"] = request["EphemeralStorage"]["Size"]
        for member, name in (
            ("Handler", "handler"),
            ("Timeout", "timeout"),
            ("MemorySize", "memory_size"),
            ("Description", "description"),
        ):
            if member in request:
                changes[name] = request[member]
        echoed = {key: request[key] for key in ECHOED_FIELDS if key in request}
        if echoed:
            changes["echoed"] = {**current.echoed, **echoed}
        with self._state.lock:
            require_idle(function)
            latest = self._begin_update(function, replace(function.latest.config, **changes))
            document = configuration(function, latest)
        in_background(f"lambda-configure-{function.name}", lambda: self._activate(function, latest, None))
        return document

    # -- in the background ----------------------------------------------------------------------
    @staticmethod
    def _begin_update(function: Function, config: CodeConfig) -> VersionRecord:
        """A new $LATEST revision, InProgress until its code is in place. Call with the lock held."""
        latest = VersionRecord(
            version=LATEST,
            config=config,
            code_dir=latest_dir(function.directory, config),
            state="Active",
            last_update_status="InProgress",
        )
        function.latest = latest
        return latest

    def _activate(self, function: Function, record: VersionRecord, publish: VersionRecord | None) -> None:
        """Unpack a $LATEST revision, make it the one invocations run, then (optionally) publish it."""
        try:
            with function.code_lock:
                if not self._state.is_current(function):  # DeleteFunction won the race: leave nothing
                    return
                unpack(record.config.package, record.code_dir)
            with self._state.lock:
                record.state = "Active"
                record.last_update_status = "Successful"
                function.serving = record
            self._environments.retire(function.name, LATEST)
        except Exception as error:
            log.exception("activating %s failed", function.name)
            with self._state.lock:
                if record.state == "Pending":
                    record.state, record.state_reason, record.state_reason_code = (
                        "Failed",
                        str(error),
                        "InternalError",
                    )
                else:
                    record.last_update_status = "Failed"
                    record.last_update_reason, record.last_update_reason_code = str(error), "InternalError"
            return
        if publish is not None:
            self._versions.activate(function, record, publish)

    # -- what the model cannot check ----------------------------------------------------------
    def _check_role(self, role: str) -> str:
        """The role must exist in IAM and trust lambda.amazonaws.com, as Lambda checks."""
        found = ROLE_ARN.match(role)
        iam = self._state.client("iam")
        try:
            existing = iam.get_role(RoleName=found["name"])["Role"] if found else None
        except iam.exceptions.NoSuchEntityException:
            existing = None
        if (
            existing is None
            or existing["Arn"] != role
            or not trusts_lambda(existing.get("AssumeRolePolicyDocument", {}))
        ):
            raise invalid_parameter("The role defined for the function cannot be assumed by Lambda.")
        return role


def _check_runtime(runtime: str) -> None:
    if not re.fullmatch(r"python3\.\d+", runtime):
        raise invalid_parameter(
            f"local_aws runs Python runtimes only (python3.x), not {runtime!r}; the handler runs on this "
            "machine's Python."
        )


def _environment(request: dict[str, Any]) -> dict[str, str]:
    variables = (request.get("Environment") or {}).get("Variables") or {}
    reserved = sorted(set(variables) & RESERVED_ENVIRONMENT_KEYS)
    if reserved:
        raise invalid_parameter(
            f"{ENVIRONMENT_REFUSED} contains reserved keys that are currently not supported for "
            f"modification. Reserved keys used in this request: {','.join(reserved)}"
        )
    measured = json.dumps(variables, separators=(",", ":"))
    if len(measured.encode()) > MAX_ENVIRONMENT_BYTES:
        raise invalid_parameter(
            f"{ENVIRONMENT_REFUSED} exceeded the 4KB limit. String measured: {measured[:200]}"
        )
    return dict(variables)


def _reject_unsupported(request: dict[str, Any]) -> None:
    for key in UNSUPPORTED_FIELDS:
        if request.get(key):
            raise invalid_parameter(f"local_aws does not support {key} for Lambda functions.")
    if request.get("PackageType", "Zip") != "Zip":
        raise invalid_parameter(
            "local_aws runs Zip packages only (PackageType Image needs a container runtime)."
        )


def trusts_lambda(document: Any) -> bool:
    """Does a role's trust policy let lambda.amazonaws.com call sts:AssumeRole?"""
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document))
    statements = document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        principal = statement.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else [principal]
        services = [services] if isinstance(services, str) else services
        if (
            statement.get("Effect") == "Allow"
            and any(action in ("sts:AssumeRole", "sts:*", "*") for action in actions)
            and any(service in ("lambda.amazonaws.com", "*") for service in services)
        ):
            return True
    return False
