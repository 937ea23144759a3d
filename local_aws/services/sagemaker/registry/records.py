"""The registry's records and how a request names them (name, ``<group>/<version>`` or ARN).

SageMaker ARNs carry names in lower case and names are unique ignoring case, so records are
keyed by the lower-cased name: a group by its name, a versioned package by
``<group>/<version>``, an unversioned one by its name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

# What a ModelPackageName / ModelPackageGroupName / ModelPackageArn may be (botocore's patterns).
_ARN = re.compile(
    r"^arn:aws[a-z\-]*:sagemaker:(?P<region>[a-z0-9\-]*):(?P<account>[0-9]{12}):"
    r"(?P<kind>[a-z\-]*)/(?P<name>[a-zA-Z0-9-]+)(?:/(?P<version>[0-9]+))?$"
)
_VERSIONED_NAME = re.compile(r"^(?P<name>[a-zA-Z0-9-]+)/(?P<version>[0-9]+)$")


@dataclasses.dataclass
class PackageGroup:
    name: str
    arn: str
    description: str | None
    created: dt.datetime
    managed_configuration: dict[str, Any] | None = None
    next_version: int = 1  # versions are never reused, even after a delete

    def summary(self) -> dict[str, Any]:
        return {
            "ModelPackageGroupName": self.name,
            "ModelPackageGroupArn": self.arn,
            "ModelPackageGroupDescription": self.description,
            "CreationTime": self.created,
            "ModelPackageGroupStatus": "Completed",
            "ManagedConfiguration": self.managed_configuration,
        }


# CreateModelPackage members DescribeModelPackage gives back as they were sent (or last updated).
ECHOED_FIELDS = (
    "ModelPackageDescription",
    "ModelPackageRegistrationType",
    "InferenceSpecification",
    "SourceAlgorithmSpecification",
    "ValidationSpecification",
    "CertifyForMarketplace",
    "MetadataProperties",
    "ModelMetrics",
    "Domain",
    "Task",
    "SamplePayloadUrl",
    "DriftCheckBaselines",
    "AdditionalInferenceSpecifications",
    "SkipModelValidation",
    "SourceUri",
    "SecurityConfig",
    "ModelCard",
    "ModelLifeCycle",
    "ManagedStorageType",
)


@dataclasses.dataclass
class ModelPackage:
    name: str  # a version's is its group's name, as SageMaker reports it
    arn: str
    group: str | None  # None: an unversioned package
    version: int | None
    fields: dict[str, Any]  # ECHOED_FIELDS present in the request (UpdateModelPackage changes some)
    created: dt.datetime
    approval_status: str | None = None
    approval_description: str | None = None
    customer_metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    modified: dt.datetime | None = None

    @property
    def key(self) -> str:
        return package_key(self.name, self.version)

    def summary(self) -> dict[str, Any]:
        return {
            "ModelPackageName": self.name,
            "ModelPackageGroupName": self.group,
            "ModelPackageVersion": self.version,
            "ModelPackageArn": self.arn,
            "ModelPackageDescription": self.fields.get("ModelPackageDescription"),
            "CreationTime": self.created,
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": self.approval_status,
            "ModelLifeCycle": self.fields.get("ModelLifeCycle"),
            "ModelPackageRegistrationType": self.fields.get("ModelPackageRegistrationType"),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "ModelPackageName": self.name,
            "ModelPackageGroupName": self.group,
            "ModelPackageVersion": self.version,
            "ModelPackageArn": self.arn,
            "CreationTime": self.created,
            "ModelPackageStatus": "Completed",
            # Nothing to validate or scan here: no ValidationSpecification is run locally.
            "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
            "ModelApprovalStatus": self.approval_status,
            "ApprovalDescription": self.approval_description,
            "CustomerMetadataProperties": self.customer_metadata or None,
            "LastModifiedTime": self.modified,
            **self.fields,
        }


def package_key(name: str, version: int | None) -> str:
    return name.lower() if version is None else f"{name.lower()}/{version}"


@dataclasses.dataclass(frozen=True)
class Reference:
    """What a request names: a resource name, its version if any, and the ARN's scope if given."""

    name: str
    version: int | None = None
    kind: str | None = None  # the ARN's resource type, e.g. "model-package"
    region: str | None = None
    account: str | None = None

    @property
    def key(self) -> str:
        return package_key(self.name, self.version)


def parse_reference(value: str) -> Reference | None:
    """A name, ``<name>/<version>`` or an ARN; None when it is none of them."""
    if found := _ARN.match(value):
        version = found["version"]
        return Reference(
            found["name"],
            int(version) if version is not None else None,
            found["kind"],
            found["region"],
            found["account"],
        )
    if found := _VERSIONED_NAME.match(value):
        return Reference(found["name"], int(found["version"]))
    if re.fullmatch(r"[a-zA-Z0-9-]+", value):
        return Reference(value)
    return None
