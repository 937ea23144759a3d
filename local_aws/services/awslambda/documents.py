"""What Lambda's operations return: configuration, alias and concurrency documents, pages."""

from __future__ import annotations

from typing import Any

from local_aws.services.awslambda.api import invalid_parameter
from local_aws.services.awslambda.state import LATEST, Alias, Function, ProvisionedConcurrency, VersionRecord

DEFAULT_MAX_ITEMS = 50


def configuration(function: Function, record: VersionRecord, qualifier: str | None = None) -> dict[str, Any]:
    """FunctionConfiguration of a version (``qualifier`` as the caller named it)."""
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


def alias_document(function: Function, alias: Alias) -> dict[str, Any]:
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


def provisioned_document(config: ProvisionedConcurrency, warm: int) -> dict[str, Any]:
    """A provisioned-concurrency config; ``warm`` environments of its version are running."""
    allocated = min(config.requested, warm) if config.status == "READY" else 0
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


def page(items: list[Any], request: dict[str, Any], key: str) -> dict[str, Any]:
    """``Marker``/``MaxItems`` pagination: the marker is the next index."""
    marker = request.get("Marker") or "0"
    if not marker.isdigit():
        raise invalid_parameter("Marker must come from a previous page.")
    start, size = int(marker), request.get("MaxItems", DEFAULT_MAX_ITEMS)
    result: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        result["NextMarker"] = str(start + size)
    return result
