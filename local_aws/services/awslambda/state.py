"""Lambda's state: functions, their versions, aliases and concurrency, behind one lock.

State is in memory (as moto's is); code lives on disk under ``state_dir/lambda/<function>/``:
``packages/<sha>.zip`` as uploaded, ``$LATEST/<sha>/`` unpacked per code revision and
``<version>/`` per published version (immutable).
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_aws.protocol.validation import constraint_error
from local_aws.services.awslambda.api import (
    function_not_found,
    invalid_parameter,
    revision_mismatch,
    update_in_progress,
)
from local_aws.services.base import Context, now

LATEST = "$LATEST"
# 2 cores here: a handful of environments per function is plenty; AWS's account default is 1000.
DEFAULT_CONCURRENCY_LIMIT = 10
# A name, a partial ARN (123456789012:function:name) or a full ARN, each with an optional :qualifier.
FUNCTION_REFERENCE = re.compile(
    r"^(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"|(?P<partial_account>\d{12}):function:)?"
    r"(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]{1,128}))?$"
)


def timestamp(moment: Any = None) -> str:
    """Lambda's LastModified format: ``2024-01-31T12:00:00.000+0000``."""
    moment = moment or now()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


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

    def provisioned_for(self, version: str) -> int:
        """How many warm environments the provisioned-concurrency configs ask of ``version``."""
        return sum(c.requested for c in self.provisioned.values() if c.version == version)


@dataclass(frozen=True)
class Target:
    """What a FunctionName + Qualifier designates."""

    function: Function
    qualifier: str | None  # as given (alias name, version, $LATEST) or None
    record: VersionRecord
    alias: Alias | None


def require_idle(function: Function) -> None:
    """Changes wait until the function's last change is in place (as on AWS)."""
    if function.latest.state == "Pending" or function.latest.last_update_status == "InProgress":
        raise update_in_progress(function.arn)


def require_revision(request: dict[str, Any], revision_id: str) -> None:
    """A request naming a RevisionId applies only to that revision."""
    given = request.get("RevisionId")
    if given and given != revision_id:
        raise revision_mismatch()


class LambdaState:
    """The functions and the lookups every operation starts with. ``lock`` guards all records."""

    def __init__(self, context: Context):
        self.context = context
        self.root = context.state_dir / "lambda"
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.functions: dict[str, Function] = {}
        self._clients: dict[str, Any] = {}

    def parse_reference(self, reference: str) -> tuple[str, str | None]:
        """(name, qualifier) of a function name, partial ARN or ARN of this account and region."""
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

    def function(self, reference: str) -> Function:
        name, _ = self.parse_reference(reference)
        with self.lock:
            function = self.functions.get(name)
        if function is None:
            raise function_not_found(self.context.arn("lambda", f"function:{name}"))
        return function

    def target(self, reference: str, qualifier: str | None) -> Target:
        name, derived = self.parse_reference(reference)
        if derived and qualifier and derived != qualifier:
            raise invalid_parameter(
                "The derived qualifier from the function name does not match the specified qualifier."
            )
        qualifier = qualifier or derived
        function = self.function(name)
        with self.lock:
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

    def is_current(self, function: Function) -> bool:
        """False once DeleteFunction removed it (background work then leaves nothing behind)."""
        with self.lock:
            return self.functions.get(function.name) is function

    def client(self, service: str) -> Any:
        with self.lock:
            if service not in self._clients:
                self._clients[service] = self.context.client(service)
            return self._clients[service]
