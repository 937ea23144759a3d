"""AWS Lambda for local_aws: the control plane the deploy operator uses, and Invoke that
really runs the handler in worker processes (see :mod:`local_aws.services.awslambda.pool`).

State is in memory (as moto's is); code lives on disk under ``state_dir/lambda/<function>/``:
``packages/<sha>.zip`` as uploaded, ``$LATEST/<sha>/`` unpacked per code revision and
``<version>/`` per published version (immutable). Functions go Pending -> Active and
updates InProgress -> Successful in the background, so botocore's waiters are the way to
wait, exactly as on AWS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import threading
import time
import urllib.parse
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from local_aws.infra.background import every, in_background
from local_aws.protocol.api import operation
from local_aws.protocol.errors import AwsError
from local_aws.protocol.validation import constraint_error
from local_aws.services.awslambda.api import LAMBDA
from local_aws.services.awslambda.pool import Outcome, Worker, WorkerInitError, WorkerPool
from local_aws.services.base import Context, Service, now

log = logging.getLogger("local_aws.lambda")

LATEST = "$LATEST"
MAX_SYNC_REQUEST_BYTES = 6 * 1024 * 1024  # 6291456, as AWS words it
MAX_SYNC_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # AWS reports 6291556 for responses
MAX_ASYNC_REQUEST_BYTES = 1024 * 1024
MAX_UNZIPPED_BYTES = 262144000
MAX_ENVIRONMENT_BYTES = 4096
LOG_TAIL_BYTES = 4096
# 2 cores here: a handful of environments per function is plenty; AWS's account default is 1000.
DEFAULT_CONCURRENCY_LIMIT = 10
ACCOUNT_CONCURRENCY = 1000  # AWS's default account limit, of which 100 stay unreserved
MIN_UNRESERVED_CONCURRENCY = 100
IDLE_WORKER_SECONDS = 300.0
MAINTENANCE_INTERVAL_SECONDS = 2.0
INIT_TIMEOUT_SECONDS = 10.0  # Lambda's init phase limit; on-demand inits get the function timeout if longer
ASYNC_SLOT_WAIT_SECONDS = 60.0

# A name, a partial ARN (123456789012:function:name) or a full ARN, each with an optional :qualifier.
FUNCTION_REFERENCE = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"|(?P<partial_account>\d{12}):function:)?"
    r"(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]{1,128}))?$"
)
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


# -- errors ------------------------------------------------------------------------------------
def invalid_parameter(message: str) -> AwsError:
    return AwsError("InvalidParameterValueException", message)


def function_not_found(arn: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"Function not found: {arn}")


def conflict(message: str) -> AwsError:
    return AwsError("ResourceConflictException", message)


def not_ready(state: str) -> AwsError:
    return conflict(
        "The operation cannot be performed at this time. "
        f"The function is currently in the following state: {state}"
    )


def update_in_progress(arn: str) -> AwsError:
    return conflict(
        f"The operation cannot be performed at this time. An update is in progress for resource: {arn}"
    )


def timestamp(moment: Any = None) -> str:
    """Lambda's LastModified format: ``2024-01-31T12:00:00.000+0000``."""
    moment = moment or now()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


# -- state -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CodeConfig:
    """Code and configuration: what a published version freezes."""

    runtime: str
    handler: str
    role: str
    timeout: int
    memory_size: int
    environment: dict[str, str]
    code_sha256: str
    code_size: int
    package: Path  # the zip as uploaded
    description: str = ""
    architectures: tuple[str, ...] = ("x86_64",)
    ephemeral_storage: int = 512
    echoed: dict[str, Any] = field(default_factory=dict)


@dataclass
class VersionRecord:
    """``$LATEST`` (one per revision: updates replace the record) or a published version."""

    version: str
    config: CodeConfig
    code_dir: Path
    revision_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    last_modified: str = field(default_factory=timestamp)
    state: str = "Pending"
    state_reason: str = ""
    state_reason_code: str = ""
    last_update_status: str = "Successful"
    last_update_reason: str = ""
    last_update_reason_code: str = ""


@dataclass
class Alias:
    name: str
    function_version: str
    description: str = ""
    additional_weights: dict[str, float] = field(default_factory=dict)
    revision_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class ProvisionedConcurrency:
    qualifier: str
    requested: int
    version: str  # what the qualifier resolved to when provisioning started
    status: str = "IN_PROGRESS"
    status_reason: str = ""
    last_modified: str = field(default_factory=timestamp)


@dataclass
class Function:
    name: str
    arn: str
    directory: Path
    latest: VersionRecord  # what GetFunction shows for $LATEST
    serving: VersionRecord | None = None  # what $LATEST invocations run: the last Active revision
    versions: dict[str, VersionRecord] = field(default_factory=dict)
    aliases: dict[str, Alias] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    reserved_concurrency: int | None = None
    provisioned: dict[str, ProvisionedConcurrency] = field(default_factory=dict)
    last_version: int = 0
    in_flight: int = 0
    code_lock: threading.Lock = field(default_factory=threading.Lock)

    def qualified_arn(self, qualifier: str | None) -> str:
        return f"{self.arn}:{qualifier}" if qualifier else self.arn

    @property
    def concurrency_limit(self) -> int:
        return DEFAULT_CONCURRENCY_LIMIT if self.reserved_concurrency is None else self.reserved_concurrency

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"


@dataclass(frozen=True)
class Target:
    """What a FunctionName + Qualifier designates."""

    function: Function
    qualifier: str | None  # as given (alias name, version, $LATEST) or None
    record: VersionRecord
    alias: Alias | None


# -- request helpers ---------------------------------------------------------------------------
def page(items: list[Any], request: dict[str, Any], key: str) -> dict[str, Any]:
    """``Marker``/``MaxItems`` pagination: the marker is the next index."""
    marker = request.get("Marker") or "0"
    if not marker.isdigit():
        raise invalid_parameter("Marker must come from a previous page.")
    start, size = int(marker), request.get("MaxItems", 50)
    chunk = items[start : start + size]
    result: dict[str, Any] = {key: chunk}
    if start + size < len(items):
        result["NextMarker"] = str(start + size)
    return result


# -- code packages -----------------------------------------------------------------------------
def code_sha256(package: bytes) -> str:
    return base64.b64encode(hashlib.sha256(package).digest()).decode()


def check_zip(package: bytes) -> None:
    """Reject what Lambda rejects synchronously: not a zip, too big unzipped, unsafe paths."""
    try:
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as error:
        raise invalid_parameter(
            "Could not unzip uploaded file. Please check your file, then try to upload again."
        ) from error
    if sum(member.file_size for member in members) > MAX_UNZIPPED_BYTES:
        raise invalid_parameter(f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes")
    for member in members:
        parts = Path(member.filename).parts
        if member.filename.startswith("/") or ".." in parts:
            raise invalid_parameter(f"Could not unzip uploaded file: unsafe path {member.filename!r}.")


def unpack(package: Path, destination: Path) -> None:
    """Unzip once into ``destination`` (content-addressed, so an existing one is complete)."""
    if destination.exists():
        return
    staging = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}")
    with zipfile.ZipFile(package) as archive:
        staging.mkdir(parents=True)  # an empty zip is still a (useless) package
        archive.extractall(staging)
        for member in archive.infolist():  # keep the executable bits the zip carries
            mode = (member.external_attr >> 16) & 0o777
            if mode and not member.is_dir():
                os.chmod(staging / member.filename, mode | 0o400)
    staging.rename(destination)


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


# -- the service -------------------------------------------------------------------------------
class LambdaService(Service):
    """Lambda's REST API (2015-03-31 and friends) served by local_aws."""

    api = LAMBDA

    def __init__(self, context: Context):
        super().__init__(context)
        self.root = context.state_dir / "lambda"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._functions: dict[str, Function] = {}
        self._pools: dict[tuple[str, str], tuple[VersionRecord, WorkerPool]] = {}
        self._retired_pools: list[WorkerPool] = []
        self._clients: dict[str, Any] = {}
        self._stopping = threading.Event()
        self.idle_worker_seconds = IDLE_WORKER_SECONDS
        self._logs = context.logs
        self._async = ThreadPoolExecutor(
            max_workers=DEFAULT_CONCURRENCY_LIMIT, thread_name_prefix="lambda-event"
        )
        self._maintenance = every(
            MAINTENANCE_INTERVAL_SECONDS, "lambda-maintenance", self._maintain, self._stopping
        )

    # -- lookups ---------------------------------------------------------------------------
    def _parse_reference(self, reference: str) -> tuple[str, str | None]:
        found = FUNCTION_REFERENCE.match(reference)
        if not found:  # the model's pattern allows more than Lambda does (names are <= 64 characters)
            raise constraint_error(
                reference,
                "functionName",
                "Member must be a function name (at most 64 characters), a partial ARN "
                "(123456789012:function:name) or an ARN, optionally followed by :qualifier",
            )
        account = found["account"] or found["partial_account"]
        if (account and account != self.context.account_id) or (
            found["region"] and found["region"] != self.context.region
        ):
            raise function_not_found(reference)
        return found["name"], found["qualifier"]

    def _function(self, reference: str) -> Function:
        name, _ = self._parse_reference(reference)
        with self._lock:
            function = self._functions.get(name)
        if function is None:
            raise function_not_found(self.context.arn("lambda", f"function:{name}"))
        return function

    def _target(self, reference: str, qualifier: str | None) -> Target:
        name, derived = self._parse_reference(reference)
        if derived and qualifier and derived != qualifier:
            raise invalid_parameter(
                "The derived qualifier from the function name does not match the specified qualifier."
            )
        qualifier = qualifier or derived
        function = self._function(name)
        with self._lock:
            if qualifier in (None, LATEST):
                return Target(function, qualifier, function.latest, None)
            if qualifier in function.versions:
                return Target(function, qualifier, function.versions[qualifier], None)
            alias = function.aliases.get(qualifier)
            if alias is None:
                raise function_not_found(function.qualified_arn(qualifier))
            record = (
                function.latest
                if alias.function_version == LATEST
                else function.versions[alias.function_version]
            )
            return Target(function, qualifier, record, alias)

    def _client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self.context.client(service)
            return self._clients[service]

    # -- documents -------------------------------------------------------------------------
    def _configuration(
        self, function: Function, record: VersionRecord, qualifier: str | None = None
    ) -> dict[str, Any]:
        config = record.config
        if qualifier is None and record.version != LATEST:
            qualifier = record.version
        document: dict[str, Any] = {
            "FunctionName": function.name,
            "FunctionArn": function.qualified_arn(qualifier),
            "Runtime": config.runtime,
            "Role": config.role,
            "Handler": config.handler,
            "CodeSize": config.code_size,
            "Description": config.description,
            "Timeout": config.timeout,
            "MemorySize": config.memory_size,
            "LastModified": record.last_modified,
            "CodeSha256": config.code_sha256,
            "Version": record.version,
            "TracingConfig": {"Mode": "PassThrough"},
            "RevisionId": record.revision_id,
            "State": record.state,
            "LastUpdateStatus": record.last_update_status,
            "PackageType": "Zip",
            "Architectures": list(config.architectures),
            "EphemeralStorage": {"Size": config.ephemeral_storage},
            "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
            "LoggingConfig": {"LogFormat": "Text", "LogGroup": function.log_group},
            **config.echoed,
        }
        if config.environment:
            document["Environment"] = {"Variables": dict(config.environment)}
        for key, value in (
            ("StateReason", record.state_reason),
            ("StateReasonCode", record.state_reason_code),
            ("LastUpdateStatusReason", record.last_update_reason),
            ("LastUpdateStatusReasonCode", record.last_update_reason_code),
        ):
            if value:
                document[key] = value
        return document

    def _alias_document(self, function: Function, alias: Alias) -> dict[str, Any]:
        document: dict[str, Any] = {
            "AliasArn": function.qualified_arn(alias.name),
            "Name": alias.name,
            "FunctionVersion": alias.function_version,
            "Description": alias.description,
            "RevisionId": alias.revision_id,
        }
        if alias.additional_weights:
            document["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.additional_weights)}
        return document

    def _provisioned_document(self, function: Function, config: ProvisionedConcurrency) -> dict[str, Any]:
        allocated = 0
        if config.status == "READY":
            allocated = min(config.requested, self._pool_size(function.name, config.version))
        document: dict[str, Any] = {
            "RequestedProvisionedConcurrentExecutions": config.requested,
            "AvailableProvisionedConcurrentExecutions": allocated,
            "AllocatedProvisionedConcurrentExecutions": allocated,
            "Status": config.status,
            "LastModified": config.last_modified,
        }
        if config.status_reason:
            document["StatusReason"] = config.status_reason
        return document

    # -- validation of configuration ------------------------------------------------------------
    def _check_role(self, role: str) -> str:
        found = ROLE_ARN.match(role)
        if not found:
            raise invalid_parameter("The role defined for the function cannot be assumed by Lambda.")
        iam = self._client("iam")
        try:
            existing = iam.get_role(RoleName=found["name"])["Role"]
        except iam.exceptions.NoSuchEntityException:
            existing = None
        if (
            existing is None
            or existing["Arn"] != role
            or not trusts_lambda(existing.get("AssumeRolePolicyDocument", {}))
        ):
            raise invalid_parameter("The role defined for the function cannot be assumed by Lambda.")
        return role

    @staticmethod
    def _check_runtime(runtime: str) -> None:
        if not re.fullmatch(r"python3\.\d+", runtime):
            raise invalid_parameter(
                f"local_aws runs Python runtimes only (python3.x), not {runtime!r}; the handler runs on this "
                "machine's Python."
            )

    @staticmethod
    def _environment(body: dict[str, Any]) -> dict[str, str]:
        variables = (body.get("Environment") or {}).get("Variables") or {}
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

    @staticmethod
    def _reject_unsupported(body: dict[str, Any]) -> None:
        for key in UNSUPPORTED_FIELDS:
            if body.get(key):
                raise invalid_parameter(f"local_aws does not support {key} for Lambda functions.")
        if body.get("PackageType", "Zip") != "Zip":
            raise invalid_parameter(
                "local_aws runs Zip packages only (PackageType Image needs a container runtime)."
            )

    def _package(self, function_dir: Path, code: dict[str, Any]) -> tuple[Path, str, int]:
        """Store the zip from ``ZipFile`` or ``S3Bucket``/``S3Key``; (path, CodeSha256, size)."""
        if code.get("ImageUri"):
            raise invalid_parameter("local_aws runs Zip packages only, not container images.")
        if code.get("ZipFile"):
            package = code["ZipFile"]  # the protocol layer decoded the base64
        elif code.get("S3Bucket") and code.get("S3Key"):
            package = self._s3_package(code["S3Bucket"], code["S3Key"], code.get("S3ObjectVersion"))
        else:
            raise invalid_parameter(
                "Please provide a source for function code: ZipFile or S3Bucket and S3Key."
            )
        check_zip(package)
        digest = hashlib.sha256(package).hexdigest()
        path = function_dir / "packages" / f"{digest}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            staging = path.with_name(f".{digest}.{uuid.uuid4().hex}")
            staging.write_bytes(package)
            staging.rename(path)
        return path, code_sha256(package), len(package)

    def _s3_package(self, bucket: str, key: str, version: str | None) -> bytes:
        s3 = self._client("s3")
        try:
            extra = {"VersionId": version} if version else {}
            return s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        except s3.exceptions.ClientError as error:
            detail = error.response.get("Error", {})
            raise invalid_parameter(
                f"Error occurred while GetObject. S3 Error Code: {detail.get('Code')}. S3 Error Message: "
                f"{detail.get('Message')}"
            ) from error

    @staticmethod
    def _check_revision(body: dict[str, Any], revision_id: str) -> None:
        given = body.get("RevisionId")
        if given and given != revision_id:
            raise AwsError(
                "PreconditionFailedException",
                "The Revision Id provided does not match the latest Revision Id. "
                "Call the GetFunction/GetAlias API to retrieve the latest Revision Id",
            )

    @staticmethod
    def _check_idle(function: Function) -> None:
        if function.latest.state == "Pending" or function.latest.last_update_status == "InProgress":
            raise update_in_progress(function.arn)

    # -- background state transitions --------------------------------------------------------
    def _activate_latest(
        self, function: Function, record: VersionRecord, publish: VersionRecord | None
    ) -> None:
        """Unpack a $LATEST revision, make it the one invocations run, then (optionally) publish it."""
        try:
            with function.code_lock:
                with self._lock:
                    deleted = self._functions.get(function.name) is not function
                if deleted:  # DeleteFunction won the race: leave nothing behind
                    return
                unpack(record.config.package, record.code_dir)
            with self._lock:
                record.state = "Active"
                record.last_update_status = "Successful"
                function.serving = record
            self._retire_pool(function.name, LATEST)
        except Exception as error:
            log.exception("activating %s failed", function.name)
            with self._lock:
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
            self._activate_version(function, record, publish)

    def _activate_version(self, function: Function, source: VersionRecord, version: VersionRecord) -> None:
        """Freeze a copy of the code so later $LATEST updates cannot touch this version."""
        try:
            with function.code_lock:
                if not version.code_dir.exists():
                    staging = version.code_dir.with_name(f".{version.version}.{uuid.uuid4().hex}")
                    shutil.copytree(source.code_dir, staging, symlinks=True)
                    staging.rename(version.code_dir)
            with self._lock:
                version.state = "Active"
        except Exception as error:
            log.exception("publishing %s:%s failed", function.name, version.version)
            with self._lock:
                version.state, version.state_reason, version.state_reason_code = (
                    "Failed",
                    str(error),
                    "InternalError",
                )

    def _publish(self, function: Function, description: str | None) -> tuple[VersionRecord, bool]:
        """(version, created): an unchanged $LATEST returns the newest version, as Lambda does.
        Call with the lock held."""
        latest = function.latest
        newest = function.versions.get(str(function.last_version))
        # A version's own Description does not count as a change of the function.
        if (
            newest is not None
            and replace(newest.config, description=latest.config.description) == latest.config
        ):
            return newest, False
        function.last_version += 1
        number = str(function.last_version)
        config = latest.config if description is None else replace(latest.config, description=description)
        version = VersionRecord(version=number, config=config, code_dir=function.directory / number)
        function.versions[number] = version
        return version, True

    # -- CreateFunction, GetFunction, ListFunctions, DeleteFunction ----------------------------
    @operation("CreateFunction")
    def create_function(self, body: dict[str, Any]) -> dict[str, Any]:
        name, qualifier = self._parse_reference(body["FunctionName"])
        if qualifier:
            raise invalid_parameter(f"CreateFunction takes an unqualified name, not {body['FunctionName']}.")
        with self._lock:
            if name in self._functions:
                raise conflict(f"Function already exist: {name}")
        self._reject_unsupported(body)
        if body.get("Runtime") is None or body.get("Handler") is None:
            raise invalid_parameter(
                "Runtime and Handler are mandatory parameters for functions created with deployment packages."
            )
        self._check_runtime(body["Runtime"])
        role = self._check_role(body["Role"])
        environment = self._environment(body)
        directory = self.root / name
        package, sha, size = self._package(directory, body["Code"])
        config = CodeConfig(
            runtime=body["Runtime"],
            handler=body["Handler"],
            role=role,
            timeout=body.get("Timeout", 3),
            memory_size=body.get("MemorySize", 128),
            environment=environment,
            code_sha256=sha,
            code_size=size,
            package=package,
            description=body.get("Description", ""),
            architectures=tuple(body.get("Architectures") or ("x86_64",)),
            ephemeral_storage=(body.get("EphemeralStorage") or {}).get("Size", 512),
            echoed={key: body[key] for key in ECHOED_FIELDS if body.get(key)},
        )
        latest = VersionRecord(version=LATEST, config=config, code_dir=self._latest_dir(directory, config))
        function = Function(
            name=name,
            arn=self.context.arn("lambda", f"function:{name}"),
            directory=directory,
            latest=latest,
            tags=dict(body.get("Tags") or {}),
        )
        with self._lock:
            if name in self._functions:
                raise conflict(f"Function already exist: {name}")
            self._functions[name] = function
            published = self._publish(function, None)[0] if body.get("Publish") else None
            document = self._configuration(function, published or latest)
        in_background(
            f"lambda-create-{name}", lambda: self._activate_latest(function, latest, published)
        )
        return document

    @staticmethod
    def _latest_dir(directory: Path, config: CodeConfig) -> Path:
        digest = base64.b64decode(config.code_sha256).hex()
        return directory / LATEST / digest

    @operation("GetFunction")
    def get_function(self, request: dict[str, Any]) -> dict[str, Any]:
        target = self._target(request["FunctionName"], request.get("Qualifier"))
        function = target.function
        with self._lock:
            document: dict[str, Any] = {
                "Configuration": self._configuration(function, target.record, target.qualifier),
                "Code": {"RepositoryType": "S3", "Location": target.record.config.package.as_uri()},
                "Tags": dict(function.tags),
            }
            if function.reserved_concurrency is not None:
                document["Concurrency"] = {"ReservedConcurrentExecutions": function.reserved_concurrency}
        return document

    @operation("GetFunctionConfiguration")
    def get_function_configuration(self, request: dict[str, Any]) -> dict[str, Any]:
        target = self._target(request["FunctionName"], request.get("Qualifier"))
        with self._lock:
            return self._configuration(target.function, target.record, target.qualifier)

    @operation("ListFunctions")
    def list_functions(self, request: dict[str, Any]) -> dict[str, Any]:
        everything = request.get("FunctionVersion") == "ALL"
        with self._lock:
            documents = []
            for function in sorted(self._functions.values(), key=lambda f: f.name):
                documents.append(self._configuration(function, function.latest))
                if everything:
                    documents += [self._configuration(function, v) for v in function.versions.values()]
        return page(documents, request, "Functions")

    @operation("DeleteFunction")
    def delete_function(self, request: dict[str, Any]) -> dict[str, Any]:
        target = self._target(request["FunctionName"], request.get("Qualifier"))
        function = target.function
        if target.alias is not None:
            raise invalid_parameter(
                "Deletion of aliases is not supported by DeleteFunction; use DeleteAlias."
            )
        if target.qualifier == LATEST:
            raise invalid_parameter("$LATEST version cannot be deleted without deleting the function.")
        if target.qualifier is not None:
            self._delete_version(function, target.record.version)
            return {"StatusCode": 204}
        with self._lock:
            self._functions.pop(function.name, None)
            pools = [pool for (name, _), (_, pool) in self._pools.items() if name == function.name]
            self._pools = {key: value for key, value in self._pools.items() if key[0] != function.name}
        for pool in pools:
            pool.close()
        with function.code_lock:
            shutil.rmtree(function.directory, ignore_errors=True)
        return {"StatusCode": 204}

    def _delete_version(self, function: Function, version: str) -> None:
        with self._lock:
            users = sorted(
                a.name
                for a in function.aliases.values()
                if a.function_version == version or version in a.additional_weights
            )
            if users:
                raise conflict(
                    f"Unable to delete version because the following aliases reference it: {users}"
                )
            function.versions.pop(version, None)
            function.provisioned.pop(version, None)
            entry = self._pools.pop((function.name, version), None)
        if entry is not None:
            entry[1].close()
        with function.code_lock:
            shutil.rmtree(function.directory / version, ignore_errors=True)

    # -- updates and versions --------------------------------------------------------------------
    @operation("UpdateFunctionCode")
    def update_function_code(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._function(body["FunctionName"])
        with self._lock:
            self._check_idle(function)
            self._check_revision(body, function.latest.revision_id)
        package, sha, size = self._package(function.directory, body)
        if body.get("DryRun"):
            with self._lock:
                return self._configuration(function, function.latest)
        with self._lock:
            self._check_idle(function)
            config = replace(
                function.latest.config,
                code_sha256=sha,
                code_size=size,
                package=package,
                architectures=tuple(body.get("Architectures") or function.latest.config.architectures),
            )
            latest = self._begin_update(function, config)
            published = self._publish(function, None)[0] if body.get("Publish") else None
            document = self._configuration(function, published or latest)
        in_background(
            f"lambda-update-{function.name}", lambda: self._activate_latest(function, latest, published)
        )
        return document

    @operation("UpdateFunctionConfiguration")
    def update_function_configuration(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._function(body["FunctionName"])
        self._reject_unsupported(body)
        with self._lock:
            self._check_idle(function)
            self._check_revision(body, function.latest.revision_id)
            current = function.latest.config
        changes: dict[str, Any] = {}
        if "Role" in body:
            changes["role"] = self._check_role(body["Role"])
        if "Runtime" in body:
            self._check_runtime(body["Runtime"])
            changes["runtime"] = body["Runtime"]
        if "Handler" in body:
            changes["handler"] = body["Handler"]
        if "Environment" in body:
            changes["environment"] = self._environment(body)
        if "Timeout" in body:
            changes["timeout"] = body["Timeout"]
        if "MemorySize" in body:
            changes["memory_size"] = body["MemorySize"]
        if "Description" in body:
            changes["description"] = body["Description"]
        if "EphemeralStorage" in body:
            changes["ephemeral_storage"] = body["EphemeralStorage"]["Size"]
        echoed = {key: body[key] for key in ECHOED_FIELDS if key in body}
        if echoed:
            changes["echoed"] = {**current.echoed, **echoed}
        with self._lock:
            self._check_idle(function)
            latest = self._begin_update(function, replace(function.latest.config, **changes))
            document = self._configuration(function, latest)
        in_background(
            f"lambda-configure-{function.name}", lambda: self._activate_latest(function, latest, None)
        )
        return document

    def _begin_update(self, function: Function, config: CodeConfig) -> VersionRecord:
        """A new $LATEST revision, InProgress until its code is in place. Call with the lock held."""
        latest = VersionRecord(
            version=LATEST,
            config=config,
            code_dir=self._latest_dir(function.directory, config),
            state="Active",
            last_update_status="InProgress",
        )
        function.latest = latest
        return latest

    @operation("PublishVersion")
    def publish_version(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._function(body["FunctionName"])
        with self._lock:
            self._check_idle(function)
            self._check_revision(body, function.latest.revision_id)
            expected = body.get("CodeSha256")
            if expected and expected != function.latest.config.code_sha256:
                raise invalid_parameter(
                    f"CodeSHA256 ({expected}) is different from current CodeSHA256 in $LATEST "
                    f"({function.latest.config.code_sha256}). Please try again with the current CodeSHA256."
                )
            version, created = self._publish(function, body.get("Description"))
            source = function.latest
            document = self._configuration(function, version)
        if created:
            in_background(
                f"lambda-publish-{function.name}", lambda: self._activate_version(function, source, version)
            )
        return document

    @operation("ListVersionsByFunction")
    def list_versions_by_function(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._function(request["FunctionName"])
        with self._lock:
            documents = [self._configuration(function, function.latest, LATEST)]
            documents += [self._configuration(function, v) for v in function.versions.values()]
        return page(documents, request, "Versions")

    # -- aliases -------------------------------------------------------------------------------
    def _alias_version(self, function: Function, version: str) -> str:
        if version != LATEST and version not in function.versions:
            raise function_not_found(function.qualified_arn(version))
        return version

    def _routing(self, function: Function, primary: str, routing: dict[str, Any] | None) -> dict[str, float]:
        weights = (routing or {}).get("AdditionalVersionWeights") or {}
        if len(weights) > 1:
            raise invalid_parameter("RoutingConfig.AdditionalVersionWeights takes at most one version.")
        for version in weights:
            if version == primary:
                raise invalid_parameter(
                    "The additional version must be a published version other than the primary."
                )
            self._alias_version(function, version)
        return {version: float(weight) for version, weight in weights.items()}

    @operation("CreateAlias")
    def create_alias(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._function(body["FunctionName"])
        name = body["Name"]
        with self._lock:
            version = self._alias_version(function, body["FunctionVersion"])
            if name in function.aliases:
                raise conflict(f"Alias already exists: {function.qualified_arn(name)}")
            alias = Alias(
                name=name,
                function_version=version,
                description=body.get("Description", ""),
                additional_weights=self._routing(function, version, body.get("RoutingConfig")),
            )
            function.aliases[name] = alias
            return self._alias_document(function, alias)

    def _alias(self, function: Function, name: str) -> Alias:
        alias = function.aliases.get(name)
        if alias is None:
            raise AwsError(
                "ResourceNotFoundException", f"Cannot find alias arn: {function.qualified_arn(name)}", 404
            )
        return alias

    @operation("GetAlias")
    def get_alias(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._function(request["FunctionName"])
        with self._lock:
            return self._alias_document(function, self._alias(function, request["Name"]))

    @operation("UpdateAlias")
    def update_alias(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._function(body["FunctionName"])
        alias = body["Name"]
        with self._lock:
            existing = self._alias(function, alias)
            self._check_revision(body, existing.revision_id)
            version = self._alias_version(function, body.get("FunctionVersion", existing.function_version))
            weights = existing.additional_weights
            if "RoutingConfig" in body:
                weights = self._routing(function, version, body["RoutingConfig"])
            moved = version != existing.function_version
            existing.function_version = version
            existing.description = body.get("Description", existing.description)
            existing.additional_weights = weights
            existing.revision_id = str(uuid.uuid4())
            provisioned = function.provisioned.get(alias)
            if provisioned is not None and moved:
                provisioned = self._restart_provisioning(function, provisioned, version)
            document = self._alias_document(function, existing)
        if provisioned is not None and moved:
            self._start_provisioning(function, provisioned)
        return document

    @operation("DeleteAlias")
    def delete_alias(self, request: dict[str, Any]) -> None:
        function = self._function(request["FunctionName"])
        with self._lock:
            function.aliases.pop(request["Name"], None)
            function.provisioned.pop(request["Name"], None)
        self._sync_provisioned_targets(function)

    @operation("ListAliases")
    def list_aliases(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._function(request["FunctionName"])
        wanted = request.get("FunctionVersion")
        with self._lock:
            documents = [
                self._alias_document(function, a)
                for a in function.aliases.values()
                if wanted is None or a.function_version == wanted
            ]
        return page(documents, request, "Aliases")

    # -- provisioned and reserved concurrency -------------------------------------------------
    @operation("PutProvisionedConcurrencyConfig")
    def put_provisioned_concurrency_config(self, body: dict[str, Any]) -> dict[str, Any]:
        target = self._target(body["FunctionName"], body["Qualifier"])
        function = target.function
        requested = body["ProvisionedConcurrentExecutions"]
        if target.record.version == LATEST:
            raise invalid_parameter(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
            )
        with self._lock:
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
            document = self._provisioned_document(function, config)
        self._start_provisioning(function, config)
        return document

    @operation("GetProvisionedConcurrencyConfig")
    def get_provisioned_concurrency_config(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._function(request["FunctionName"])
        with self._lock:
            config = function.provisioned.get(request["Qualifier"])
            if config is None:
                raise AwsError(
                    "ProvisionedConcurrencyConfigNotFoundException",
                    "No Provisioned Concurrency Config found for this function",
                )
            return self._provisioned_document(function, config)

    @operation("ListProvisionedConcurrencyConfigs")
    def list_provisioned_concurrency_configs(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._function(request["FunctionName"])
        with self._lock:
            documents = [
                {"FunctionArn": function.qualified_arn(q), **self._provisioned_document(function, c)}
                for q, c in function.provisioned.items()
            ]
        return page(documents, request, "ProvisionedConcurrencyConfigs")

    @operation("DeleteProvisionedConcurrencyConfig")
    def delete_provisioned_concurrency_config(self, request: dict[str, Any]) -> None:
        function = self._function(request["FunctionName"])
        with self._lock:
            if function.provisioned.pop(request["Qualifier"], None) is None:
                raise AwsError(
                    "ProvisionedConcurrencyConfigNotFoundException",
                    "No Provisioned Concurrency Config found for this function",
                )
        self._sync_provisioned_targets(function)

    def _restart_provisioning(
        self, function: Function, config: ProvisionedConcurrency, version: str
    ) -> ProvisionedConcurrency:
        """The alias moved: provision its new version (a new config object cancels the old run)."""
        fresh = ProvisionedConcurrency(
            qualifier=config.qualifier, requested=config.requested, version=version
        )
        function.provisioned[config.qualifier] = fresh
        return fresh

    def _start_provisioning(self, function: Function, config: ProvisionedConcurrency) -> None:
        self._sync_provisioned_targets(function)
        in_background(f"lambda-provision-{function.name}", lambda: self._provision(function, config))

    def _provision(self, function: Function, config: ProvisionedConcurrency) -> None:
        """Start warm workers for the version until the config is READY (or FAILED)."""
        with self._lock:
            record = function.versions.get(config.version)
        deadline = time.monotonic() + 600
        while record is not None and record.state == "Pending" and time.monotonic() < deadline:
            time.sleep(0.05)  # a version being published: its code is still being copied
        status, reason = "READY", ""
        if record is None or record.state != "Active":
            status, reason = "FAILED", f"Version {config.version} is not active."
        else:
            try:
                pool = self._pool(function, record)
                target = self._provisioned_target(function, config.version)
                for worker in pool.warm(target):
                    self._ship_init_log(function, worker)
            except WorkerInitError as error:
                status = "FAILED"
                document = error.document
                reason = "FUNCTION_ERROR_INIT_FAILURE: {}: {}".format(
                    document.get("errorType"), document.get("errorMessage")
                )
                self._logs.put_text(function.log_group, self._new_log_stream(config.version), error.log_text)
        with self._lock:
            if function.provisioned.get(config.qualifier) is config:
                config.status, config.status_reason = status, reason
                config.last_modified = timestamp()

    def _provisioned_target(self, function: Function, version: str) -> int:
        with self._lock:
            return sum(c.requested for c in function.provisioned.values() if c.version == version)

    def _sync_provisioned_targets(self, function: Function) -> None:
        """Tell every pool of the function how many workers to keep warm."""
        with self._lock:
            pools = [
                (version, pool) for (name, version), (_, pool) in self._pools.items() if name == function.name
            ]
        for version, pool in pools:
            pool.provisioned = self._provisioned_target(function, version)

    @operation("PutFunctionConcurrency")
    def put_function_concurrency(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._function(body["FunctionName"])
        reserved = body["ReservedConcurrentExecutions"]
        if reserved > ACCOUNT_CONCURRENCY - MIN_UNRESERVED_CONCURRENCY:
            raise invalid_parameter(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED_CONCURRENCY}]."
            )
        with self._lock:
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
        function = self._function(request["FunctionName"])
        with self._lock:
            reserved = function.reserved_concurrency
        return {} if reserved is None else {"ReservedConcurrentExecutions": reserved}

    @operation("DeleteFunctionConcurrency")
    def delete_function_concurrency(self, request: dict[str, Any]) -> None:
        function = self._function(request["FunctionName"])
        with self._lock:
            function.reserved_concurrency = None

    # -- tags --------------------------------------------------------------------------------
    def _tagged(self, resource: str) -> Function:
        name, qualifier = self._parse_reference(resource)
        if qualifier or not resource.startswith("arn:"):
            raise invalid_parameter(f"Tags go on an unqualified function ARN, not {resource!r}.")
        return self._function(name)

    @operation("TagResource")
    def tag_resource(self, request: dict[str, Any]) -> None:
        if not request["Tags"]:
            raise invalid_parameter("Tags must map at least one key to a value.")
        function = self._tagged(request["Resource"])
        with self._lock:
            function.tags.update(request["Tags"])

    @operation("ListTags")
    def list_tags(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._tagged(request["Resource"])
        with self._lock:
            return {"Tags": dict(function.tags)}

    @operation("UntagResource")
    def untag_resource(self, request: dict[str, Any]) -> None:
        function = self._tagged(request["Resource"])
        with self._lock:
            for key in request["TagKeys"]:
                function.tags.pop(key, None)

    # -- Invoke ------------------------------------------------------------------------------
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
                raise AwsError(
                    "InvalidRequestContentException", f"Could not parse request body into json: {error}"
                ) from error
        client_context = self._client_context(request.get("ClientContext"))
        target = self._target(request["FunctionName"], request.get("Qualifier"))
        record = self._runnable(target)
        if invocation_type == "DryRun":
            return {"StatusCode": 204}
        invoked_arn = target.function.qualified_arn(target.qualifier)
        if invocation_type == "Event":
            self._async.submit(
                self._invoke_event, target.function, record, invoked_arn, event, client_context
            )
            return {"StatusCode": 202}
        outcome, log_text = self._run(target.function, record, invoked_arn, event, client_context)
        result: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": record.version}
        result["Payload"] = outcome.body
        if outcome.kind == "result" and len(outcome.body) > MAX_SYNC_RESPONSE_BYTES:
            outcome = Outcome(kind="error")
            result["Payload"] = json.dumps(
                {
                    "errorMessage": "Response payload size exceeded maximum allowed payload size "
                    f"({MAX_SYNC_RESPONSE_BYTES} bytes).",
                    "errorType": "Function.ResponseSizeTooLarge",
                }
            ).encode()
        if outcome.kind != "result":
            result["FunctionError"] = "Unhandled"
        if request.get("LogType") == "Tail":
            result["LogResult"] = base64.b64encode(log_text.encode()[-LOG_TAIL_BYTES:]).decode()
        return result

    @staticmethod
    def _client_context(header: str | None) -> dict[str, Any] | None:
        if not header:
            return None
        try:
            document = json.loads(base64.b64decode(header, validate=True))
        except (binascii.Error, ValueError) as error:
            raise AwsError(
                "InvalidRequestContentException", "Client context must be a valid Base64-encoded JSON object."
            ) from error
        if not isinstance(document, dict):
            raise AwsError(
                "InvalidRequestContentException", "Client context must be a valid Base64-encoded JSON object."
            )
        return document

    def _runnable(self, target: Target) -> VersionRecord:
        """The version an invocation runs: the alias's (weighted) choice, the Active $LATEST."""
        function = target.function
        with self._lock:
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
        self,
        function: Function,
        record: VersionRecord,
        invoked_arn: str,
        event: bytes,
        client_context: dict[str, Any] | None,
    ) -> None:
        """Asynchronous invocation: wait for a free slot (Lambda queues events), run, log the result."""
        deadline = time.monotonic() + ASYNC_SLOT_WAIT_SECONDS
        while not self._stopping.is_set():
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
        self,
        function: Function,
        record: VersionRecord,
        invoked_arn: str,
        event: bytes,
        client_context: dict[str, Any] | None,
    ) -> tuple[Outcome, str]:
        """Run one invocation in a worker of the version; (outcome, log text for LogType=Tail)."""
        with self._lock:
            if self._stopping.is_set():
                raise AwsError("ServiceException", "local_aws is shutting down.", 503)
            if function.in_flight >= function.concurrency_limit:
                raise AwsError(
                    "TooManyRequestsException",
                    f"Rate Exceeded. ({function.name} runs at most {function.concurrency_limit} at once)",
                    429,
                )
            function.in_flight += 1
        request_id = str(uuid.uuid4())
        try:
            return self._run_in_worker(function, record, invoked_arn, event, client_context, request_id)
        finally:
            with self._lock:
                function.in_flight -= 1

    def _run_in_worker(
        self,
        function: Function,
        record: VersionRecord,
        invoked_arn: str,
        event: bytes,
        client_context: dict[str, Any] | None,
        request_id: str,
    ) -> tuple[Outcome, str]:
        config = record.config
        pool = self._pool(function, record)
        try:
            worker, cold = pool.acquire()
        except WorkerInitError as error:
            stream = self._new_log_stream(record.version)
            lines = [error.log_text.rstrip("\n"), f"START RequestId: {request_id} Version: {record.version}"]
            error_type = error.document.get("errorType")
            lines += [
                f"END RequestId: {request_id}",
                f"REPORT RequestId: {request_id}\tStatus: error\tError Type: {error_type}",
            ]
            text = "\n".join(line for line in lines if line) + "\n"
            self._logs.put_text(function.log_group, stream, text)
            return Outcome(kind="error", body=json.dumps(error.document).encode()), text
        init_text = ""
        if cold:
            init_text = self._ship_init_log(function, worker)
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
        outcome, status_line = self._settle(outcome, request_id, config.timeout)
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

    @staticmethod
    def _settle(outcome: Outcome, request_id: str, timeout: int) -> tuple[Outcome, str]:
        """Turn a timeout or a crash into the error document Lambda returns; plus a log line."""
        if outcome.kind == "timeout":
            message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
            document = {"errorType": "Sandbox.Timedout", "errorMessage": message}
            return Outcome(
                kind="timeout", body=json.dumps(document).encode(), duration_ms=timeout * 1000.0
            ), f"{timestamp()} {request_id} Task timed out after {timeout:.2f} seconds"
        if outcome.kind == "crash":
            message = f"RequestId: {request_id} Error: Runtime exited with error: {outcome.exit_status}"
            document = {"errorType": "Runtime.ExitError", "errorMessage": message}
            return Outcome(kind="crash", body=json.dumps(document).encode()), message
        return outcome, ""

    # -- workers -----------------------------------------------------------------------------
    def _pool(self, function: Function, record: VersionRecord) -> WorkerPool:
        """The pool running ``record``; a changed $LATEST gets a fresh pool (the old one drains)."""
        key = (function.name, record.version)
        with self._lock:
            if self._stopping.is_set():
                raise AwsError("ServiceException", "local_aws is shutting down.", 503)
            existing = self._pools.get(key)
            if existing is not None and existing[0] is record:
                return existing[1]
            pool = WorkerPool(lambda: self._start_worker(function, record))
            pool.provisioned = sum(
                c.requested for c in function.provisioned.values() if c.version == record.version
            )
            self._pools[key] = (record, pool)
            old = existing[1] if existing else None
            if old is not None:
                self._retired_pools.append(old)
        if old is not None:
            old.retire()
        return pool

    def _retire_pool(self, function_name: str, version: str) -> None:
        with self._lock:
            entry = self._pools.pop((function_name, version), None)
            if entry is not None:
                self._retired_pools.append(entry[1])
        if entry is not None:
            entry[1].retire()

    def _pool_size(self, function_name: str, version: str) -> int:
        with self._lock:
            entry = self._pools.get((function_name, version))
        return entry[1].size() if entry else 0

    def worker_pids(self, function_name: str, version: str) -> list[int]:
        """Live worker processes of one function version (for tests and diagnostics)."""
        with self._lock:
            entry = self._pools.get((function_name, version))
        return entry[1].pids() if entry else []

    def _new_log_stream(self, version: str) -> str:
        return f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{version}]{uuid.uuid4().hex}"

    def _start_worker(self, function: Function, record: VersionRecord) -> Worker:
        config = record.config
        stream = self._new_log_stream(record.version)
        environment = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
            # No profile from this machine's ~/.aws may steer the handler's boto3 elsewhere.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            **self.context.worker_environment(),
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_VERSION": record.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency"
            if self._provisioned_target(function, record.version)
            else "on-demand",
            "LAMBDA_TASK_ROOT": str(record.code_dir),
            "_HANDLER": config.handler,
            **config.environment,
        }
        init_log = function.directory / ".init" / f"{uuid.uuid4().hex}.log"
        return Worker.start(
            env=environment,
            task_root=record.code_dir,
            log_stream=stream,
            init_log_path=init_log,
            init_timeout=max(INIT_TIMEOUT_SECONDS, float(config.timeout)),
        )

    def _ship_init_log(self, function: Function, worker: Worker) -> str:
        text = f"INIT_START Runtime Version: python:{sys.version_info.major}.{sys.version_info.minor}\n"
        text += worker.init_log
        self._logs.put_text(function.log_group, worker.log_stream, text)
        return text

    def _maintain(self) -> None:
        """Reap idle workers, replace dead provisioned ones, forget drained retired pools."""
        with self._lock:
            pools = [(name, record, pool) for (name, _), (record, pool) in self._pools.items()]
            self._retired_pools = [p for p in self._retired_pools if not p.drained()]
        for name, _record, pool in pools:
            try:
                pool.reap(self.idle_worker_seconds)
                if pool.provisioned and pool.size() < pool.provisioned:
                    with self._lock:
                        function = self._functions.get(name)
                    if function is not None:
                        for worker in pool.warm(pool.provisioned):
                            self._ship_init_log(function, worker)
            except Exception:  # one bad pool must not stop the housekeeping of the others
                log.warning("lambda maintenance of %s failed", name, exc_info=True)

    def shutdown(self) -> None:
        """Stop every worker process (whole process groups) and the background threads."""
        self._stopping.set()
        self._maintenance.join(timeout=5)
        self._async.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            pools = [pool for _, pool in self._pools.values()] + self._retired_pools
            self._pools, self._retired_pools = {}, []
        for pool in pools:
            pool.close()
