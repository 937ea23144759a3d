"""Hosting's records (models, endpoint configs, endpoints) and the lookups every operation does.

SageMaker ARNs carry the name in lower case, and names are unique ignoring case; the error
texts are SageMaker's, because callers (the Amazon provider's operators, botocore's waiters)
match on them: ``Could not find endpoint "<arn>".``
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from local_aws.protocol.errors import validation_error
from local_aws.services.base import Context
from local_aws.services.sagemaker.hosting.fleet import Deployment
from local_aws.services.sagemaker.listing import list_page

if TYPE_CHECKING:
    from local_aws.services.sagemaker.hosting.rollouts import BlueGreenRollout


@dataclasses.dataclass
class ModelRecord:
    name: str
    arn: str
    containers: list[dict[str, Any]]
    request: dict[str, Any]
    created: dt.datetime

    @property
    def container(self) -> dict[str, Any]:
        return self.containers[0]


@dataclasses.dataclass
class EndpointConfigRecord:
    name: str
    arn: str
    variants: list[dict[str, Any]]
    request: dict[str, Any]
    created: dt.datetime


@dataclasses.dataclass
class PendingUpdate:
    config: EndpointConfigRecord
    started: dt.datetime


@dataclasses.dataclass
class EndpointRecord:
    name: str
    arn: str
    config_name: str
    status: str
    created: dt.datetime
    modified: dt.datetime
    failure_reason: str | None = None
    deployment: Deployment | None = None  # the fleet serving (blue, while a blue/green update runs)
    pending: PendingUpdate | None = None
    rollout: BlueGreenRollout | None = None  # a blue/green update under way
    last_deployment_config: dict[str, Any] | None = None
    deleted: bool = False


class HostingState:
    """Every model, endpoint config and endpoint, by lower-cased name, behind one lock."""

    def __init__(self, context: Context):
        self.context = context
        self.root = context.state_dir / "hosting"
        self.lock = threading.RLock()
        self.models: dict[str, ModelRecord] = {}
        self.configs: dict[str, EndpointConfigRecord] = {}
        self.endpoints: dict[str, EndpointRecord] = {}

    def arn(self, kind: str, name: str) -> str:
        return self.context.arn("sagemaker", f"{kind}/{name.lower()}")

    def model(self, name: str) -> ModelRecord:
        with self.lock:
            record = self.models.get(name.lower())
        if record is None:
            raise validation_error(f'Could not find model "{self.arn("model", name)}".')
        return record

    def config(self, name: str) -> EndpointConfigRecord:
        with self.lock:
            record = self.configs.get(name.lower())
        if record is None:
            raise validation_error(
                f'Could not find endpoint configuration "{self.arn("endpoint-config", name)}".'
            )
        return record

    def endpoint(self, name: str) -> EndpointRecord:
        with self.lock:
            record = self.endpoints.get(name.lower())
        if record is None:
            raise validation_error(f'Could not find endpoint "{self.arn("endpoint", name)}".')
        return record


_BY_NAME_OR_CREATION: dict[str, Callable[[Any], Any]] = {
    "Name": lambda r: r.name,
    "CreationTime": lambda r: r.created,
}


def page_of(request: dict[str, Any], records: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """List* paging over models or endpoint configs (name and creation time)."""
    times = {"CreationTime": lambda r: r.created}
    return list_page(request, records, name=lambda r: r.name, times=times, sort_keys=_BY_NAME_OR_CREATION)


def page_of_endpoints(
    request: dict[str, Any], records: list[EndpointRecord]
) -> tuple[list[Any], dict[str, str]]:
    """List* paging over endpoints, which also have a status and a last-modified time."""
    return list_page(
        request,
        records,
        name=lambda r: r.name,
        status=lambda r: r.status,
        times={"CreationTime": lambda r: r.created, "LastModifiedTime": lambda r: r.modified},
        sort_keys={**_BY_NAME_OR_CREATION, "Status": lambda r: r.status},
    )
