"""SageMaker's AddTags, ListTags and DeleteTags, for every kind of resource (tags by ARN)."""

from __future__ import annotations

from typing import Any

from local_aws.protocol.api import operation
from local_aws.services.base import Service
from local_aws.services.sagemaker.api import SAGEMAKER


class SageMakerTags(Service):
    api = SAGEMAKER

    @operation("AddTags")
    def add_tags(self, request: dict[str, Any]) -> dict[str, Any]:
        self.context.tags.add(request["ResourceArn"], request.get("Tags"))
        return {"Tags": request.get("Tags", [])}

    @operation("ListTags")
    def list_tags(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": self.context.tags.get(request["ResourceArn"])}

    @operation("DeleteTags")
    def delete_tags(self, request: dict[str, Any]) -> dict[str, Any]:
        self.context.tags.delete(request["ResourceArn"], request["TagKeys"])
        return {}
