"""What every service is built on: the Context it is given and the Service base class.

A service is constructed with the :class:`Context` (where its state lives, how to call back
into this server, the shared CloudWatch Logs shipper, the clock its waits and periods run on,
moto in-process, the other services) and serves the
operations its methods are marked with (:func:`local_aws.protocol.api.operation`) for its
``api``. A service without an ``api`` (the autoscaling controller) only works in the
background. ``shutdown()`` stops the processes and threads it started.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from local_aws.infra.clock import Clock
from local_aws.infra.cloudwatch_logs import LogShipper
from local_aws.protocol.api import Api, Handler, handlers_of
from local_aws.protocol.moto_calls import MotoCalls

ACCOUNT_ID = "123456789012"  # moto's default account, so ARNs agree across services


def now() -> dt.datetime:
    """The services' clock: aware, in UTC."""
    return dt.datetime.now(dt.UTC)


class TagStore:
    """Tags by resource ARN (SageMaker's AddTags, ListTags, DeleteTags and its Create* Tags)."""

    def __init__(self) -> None:
        self._tags: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def add(self, arn: str, tags: list[dict[str, str]] | None) -> None:
        with self._lock:
            self._tags.setdefault(arn, {}).update({t["Key"]: t["Value"] for t in tags or []})

    def get(self, arn: str) -> list[dict[str, str]]:
        with self._lock:
            return [{"Key": k, "Value": v} for k, v in self._tags.get(arn, {}).items()]

    def delete(self, arn: str, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._tags.get(arn, {}).pop(key, None)

    def forget(self, arn: str) -> None:
        with self._lock:
            self._tags.pop(arn, None)


@dataclass
class Context:
    """What services share: where state lives, how to call back into this server, each other."""

    state_dir: Path
    endpoint_url: str
    region: str = "us-east-1"
    account_id: str = ACCOUNT_ID
    tags: TagStore = field(default_factory=TagStore)
    services: dict[str, Any] = field(default_factory=dict)
    clock: Clock = field(default_factory=Clock)  # AWS's minutes, sped up by the time scale
    moto: MotoCalls | None = None  # moto's APIs in-process (set by the server before services start)
    logs: LogShipper = field(init=False)  # CloudWatch Logs for every process the services run

    def __post_init__(self) -> None:
        self.logs = LogShipper(lambda: self.client("logs"))

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"

    def client(self, service: str, region: str | None = None) -> Any:
        """A boto3 client for this very server (S3, Logs, ... are served by moto in-process)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=region or self.region,
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - the stand-in accepts any credentials
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def worker_environment(self) -> dict[str, str]:
        """Environment for processes we start (training, model servers, Lambda workers) so their
        boto3 calls come back here instead of going to AWS."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        }


class Service:
    """A part of local_aws: constructed with the Context, serving ``api``'s marked operations."""

    api: ClassVar[Api | None] = None

    def __init__(self, context: Context):
        self.context = context

    def handlers(self) -> dict[str, Handler]:
        return handlers_of(self)

    def shutdown(self) -> None:
        """Stop what the service started (processes, threads)."""
