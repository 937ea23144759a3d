"""PublishVersion and ListVersionsByFunction; publishing freezes a copy of $LATEST's code."""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import replace
from typing import Any

from local_aws.infra.background import in_background
from local_aws.protocol.api import operation
from local_aws.services.awslambda.api import conflict, invalid_parameter
from local_aws.services.awslambda.documents import configuration, page
from local_aws.services.awslambda.environments import ExecutionEnvironments
from local_aws.services.awslambda.state import (
    LATEST,
    Function,
    LambdaState,
    VersionRecord,
    require_idle,
    require_revision,
)

log = logging.getLogger("local_aws.lambda")


class Versions:
    def __init__(self, state: LambdaState, environments: ExecutionEnvironments):
        self._state = state
        self._environments = environments

    @operation("PublishVersion")
    def publish_version(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        with self._state.lock:
            require_idle(function)
            require_revision(request, function.latest.revision_id)
            expected = request.get("CodeSha256")
            if expected and expected != function.latest.config.code_sha256:
                raise invalid_parameter(
                    f"CodeSHA256 ({expected}) is different from current CodeSHA256 in $LATEST "
                    f"({function.latest.config.code_sha256}). Please try again with the current CodeSHA256."
                )
            version, created = self.publish(function, request.get("Description"))
            source = function.latest
            document = configuration(function, version)
        if created:
            in_background(f"lambda-publish-{function.name}", lambda: self.activate(function, source, version))
        return document

    @operation("ListVersionsByFunction")
    def list_versions_by_function(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._state.function(request["FunctionName"])
        with self._state.lock:
            documents = [configuration(function, function.latest, LATEST)]
            documents += [configuration(function, v) for v in function.versions.values()]
        return page(documents, request, "Versions")

    def publish(self, function: Function, description: str | None) -> tuple[VersionRecord, bool]:
        """(version, created): an unchanged $LATEST returns the newest version, as Lambda does.
        Call with the lock held; then :meth:`activate` a created one."""
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

    def activate(self, function: Function, source: VersionRecord, version: VersionRecord) -> None:
        """Freeze a copy of the code so later $LATEST updates cannot touch this version."""
        try:
            with function.code_lock:
                if not version.code_dir.exists():
                    staging = version.code_dir.with_name(f".{version.version}.{uuid.uuid4().hex}")
                    shutil.copytree(source.code_dir, staging, symlinks=True)
                    staging.rename(version.code_dir)
            with self._state.lock:
                version.state = "Active"
        except Exception as error:
            log.exception("publishing %s:%s failed", function.name, version.version)
            with self._state.lock:
                version.state, version.state_reason, version.state_reason_code = (
                    "Failed",
                    str(error),
                    "InternalError",
                )

    def delete(self, function: Function, version: str) -> None:
        """DeleteFunction with a version qualifier."""
        with self._state.lock:
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
        self._environments.close(function.name, version)
        with function.code_lock:
            shutil.rmtree(function.directory / version, ignore_errors=True)
