"""Aliases: a name for a version, optionally splitting traffic with one more version."""

from __future__ import annotations

import uuid
from typing import Any

from local_aws.protocol.api import operation
from local_aws.protocol.errors import AwsError
from local_aws.services.awslambda.api import conflict, function_not_found, invalid_parameter
from local_aws.services.awslambda.concurrency import Concurrency
from local_aws.services.awslambda.documents import alias_document, page
from local_aws.services.awslambda.environments import ExecutionEnvironments
from local_aws.services.awslambda.state import LATEST, Alias, Function, LambdaState, require_revision


class Aliases:
    def __init__(self, state: LambdaState, environments: ExecutionEnvironments, concurrency: Concurrency):
        self._state = state
        self._environments = environments
        self._concurrency = concurrency

    @operation("CreateAlias")
    def create_alias(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        name = request["Name"]
        with self._state.lock:
            version = _existing_version(function, request["FunctionVersion"])
            if name in function.aliases:
                raise conflict(f"Alias already exists: {function.qualified_arn(name)}")
            alias = Alias(
                name=name,
                function_version=version,
                description=request.get("Description", ""),
                additional_weights=_routing(function, version, request.get("RoutingConfig")),
            )
            function.aliases[name] = alias
            return alias_document(function, alias)

    @operation("GetAlias")
    def get_alias(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        with self._state.lock:
            return alias_document(function, _alias(function, request["Name"]))

    @operation("UpdateAlias")
    def update_alias(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        with self._state.lock:
            alias = _alias(function, request["Name"])
            require_revision(request, alias.revision_id)
            version = _existing_version(function, request.get("FunctionVersion", alias.function_version))
            if "RoutingConfig" in request:
                alias.additional_weights = _routing(function, version, request["RoutingConfig"])
            moved = version != alias.function_version
            alias.function_version = version
            alias.description = request.get("Description", alias.description)
            alias.revision_id = str(uuid.uuid4())
            provisioned = self._concurrency.moved(function, alias.name, version) if moved else None
            document = alias_document(function, alias)
        if provisioned is not None:
            self._concurrency.start(function, provisioned)
        return document

    @operation("DeleteAlias")
    def delete_alias(self, request: dict[str, Any]) -> None:
        function = self._state.function(request["FunctionName"])
        with self._state.lock:
            function.aliases.pop(request["Name"], None)
            function.provisioned.pop(request["Name"], None)
        self._environments.sync_provisioned(function)

    @operation("ListAliases")
    def list_aliases(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        wanted = request.get("FunctionVersion")
        with self._state.lock:
            documents = [
                alias_document(function, a)
                for a in function.aliases.values()
                if wanted is None or a.function_version == wanted
            ]
        return page(documents, request, "Aliases")


def _alias(function: Function, name: str) -> Alias:
    alias = function.aliases.get(name)
    if alias is None:
        raise AwsError("ResourceNotFoundException", f"Cannot find alias arn: {function.qualified_arn(name)}")
    return alias


def _existing_version(function: Function, version: str) -> str:
    if version != LATEST and version not in function.versions:
        raise function_not_found(function.qualified_arn(version))
    return version


def _routing(function: Function, primary: str, routing: dict[str, Any] | None) -> dict[str, float]:
    weights = (routing or {}).get("AdditionalVersionWeights") or {}
    if len(weights) > 1:
        raise invalid_parameter("RoutingConfig.AdditionalVersionWeights takes at most one version.")
    for version in weights:
        if version == primary:
            raise invalid_parameter(
                "The additional version must be a published version other than the primary."
            )
        _existing_version(function, version)
    return {version: float(weight) for version, weight in weights.items()}
