"""Lambda's TagResource, ListTags, UntagResource (tags on unqualified function ARNs)."""

from __future__ import annotations

from typing import Any

from local_aws.protocol.api import operation
from local_aws.services.awslambda.api import invalid_parameter
from local_aws.services.awslambda.state import Function, LambdaState


class Tags:
    def __init__(self, state: LambdaState):
        self._state = state

    @operation("TagResource")
    def tag_resource(self, request: dict[str, Any]) -> None:
        if not request["Tags"]:
            raise invalid_parameter("Tags must map at least one key to a value.")
        function = self._tagged(request["Resource"])
        with self._state.lock:
            function.tags.update(request["Tags"])

    @operation("ListTags")
    def list_tags(self, request: dict[str, Any]) -> dict[str, Any]:
        function = self._tagged(request["Resource"])
        with self._state.lock:
            return {"Tags": dict(function.tags)}

    @operation("UntagResource")
    def untag_resource(self, request: dict[str, Any]) -> None:
        function = self._tagged(request["Resource"])
        with self._state.lock:
            for key in request["TagKeys"]:
                function.tags.pop(key, None)

    def _tagged(self, resource: str) -> Function:
        name, qualifier = self._state.parse_reference(resource)
        if qualifier or not resource.startswith("arn:"):
            raise invalid_parameter(f"Tags go on an unqualified function ARN, not {resource!r}.")
        return self._state.function(name)
