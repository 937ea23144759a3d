"""SageMaker Model Registry: CreateModelPackageGroup ... DeleteModelPackage, kept in memory.

local_aws owns the registry rather than leaving it to moto's SageMaker backend: hosting's
CreateModel reads a package's InferenceSpecification (moto cannot create a model from a
package), and the registry's rules are AWS's here: an existing group is an error (the Amazon
provider's hook matches on its text), versions are numbered per group and never reused, an
update merges customer metadata, a group with versions cannot be deleted. Tags of groups and
packages are SageMaker's AddTags/ListTags on their ARNs (:mod:`..tags`).
"""

from __future__ import annotations

import threading
from typing import Any

from local_aws.protocol.api import operation
from local_aws.protocol.errors import AwsError, validation_error
from local_aws.services.base import Context, Service, now
from local_aws.services.sagemaker.api import SAGEMAKER, s3_location
from local_aws.services.sagemaker.listing import list_page
from local_aws.services.sagemaker.registry.records import (
    ECHOED_FIELDS,
    ModelPackage,
    PackageGroup,
    Reference,
    package_key,
    parse_reference,
)

GROUP_KIND, PACKAGE_KIND = "model-package-group", "model-package"
MAX_ADDITIONAL_INFERENCE_SPECIFICATIONS = 15
_BY_NAME_OR_CREATION = {
    "Name": lambda record: (record.name.lower(), getattr(record, "version", None) or 0),
    "CreationTime": lambda record: (record.created, getattr(record, "version", None) or 0),
}
# UpdateModelPackage members that replace what the package had.
_REPLACED_ON_UPDATE = ("InferenceSpecification", "SourceUri", "ModelCard", "ModelLifeCycle",
                       "ModelPackageRegistrationType")  # fmt: skip


class ModelRegistry(Service):
    api = SAGEMAKER

    def __init__(self, context: Context):
        super().__init__(context)
        self._lock = threading.RLock()
        self._groups: dict[str, PackageGroup] = {}
        self._packages: dict[str, ModelPackage] = {}

    # -- groups ---------------------------------------------------------------------------------
    @operation("CreateModelPackageGroup")
    def create_model_package_group(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["ModelPackageGroupName"]
        arn = self._arn(GROUP_KIND, name)
        with self._lock:
            if name.lower() in self._groups:
                # The Amazon provider's create_model_package_group matches on this text.
                raise validation_error(f"Model Package Group already exists: {arn}")
            self._groups[name.lower()] = PackageGroup(
                name, arn, request.get("ModelPackageGroupDescription"), now(),
                request.get("ManagedConfiguration"),
            )  # fmt: skip
        self.context.tags.add(arn, request.get("Tags"))
        return {"ModelPackageGroupArn": arn}

    @operation("DescribeModelPackageGroup")
    def describe_model_package_group(self, request: dict[str, Any]) -> dict[str, Any]:
        # CreatedBy names a Studio user profile; calls from outside Studio leave it empty.
        return {**self._group(request["ModelPackageGroupName"]).summary(), "CreatedBy": {}}

    @operation("ListModelPackageGroups")
    def list_model_package_groups(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("CrossAccountFilterOption") == "CrossAccount":
            return {"ModelPackageGroupSummaryList": []}  # nothing is shared with this account
        with self._lock:
            groups = list(self._groups.values())
        page, token = self._page(request, groups)
        return {"ModelPackageGroupSummaryList": [group.summary() for group in page], **token}

    @operation("DeleteModelPackageGroup")
    def delete_model_package_group(self, request: dict[str, Any]) -> dict[str, Any]:
        group = self._group(request["ModelPackageGroupName"])
        with self._lock:
            versions = sorted(p.version or 0 for p in self._packages.values() if p.group == group.name)
            if versions:
                raise AwsError(
                    "ConflictException",
                    f"Model Package Group {group.arn} still has model package versions {versions}; "
                    "delete them first.",
                )
            self._groups.pop(group.name.lower(), None)
        self.context.tags.forget(group.arn)
        return {}

    # -- packages -------------------------------------------------------------------------------
    @operation("CreateModelPackage")
    def create_model_package(self, request: dict[str, Any]) -> dict[str, Any]:
        group_name, package_name = request.get("ModelPackageGroupName"), request.get("ModelPackageName")
        if group_name and package_name:
            raise validation_error(
                "Both ModelPackageName and ModelPackageGroupName are provided in the input. "
                "Cannot determine which one to use."
            )
        if not group_name and not package_name:
            raise validation_error("Missing ARN: give ModelPackageGroupName (a version) or ModelPackageName.")
        if not group_name and request.get("ModelApprovalStatus"):
            raise validation_error("ModelApprovalStatus applies to versioned model packages only.")
        _check_containers(request.get("InferenceSpecification"))
        fields = {key: request[key] for key in ECHOED_FIELDS if key in request}
        created = now()
        with self._lock:
            if group_name:
                group = self._group(group_name)
                version = group.next_version
                group.next_version += 1
                package = ModelPackage(
                    group.name, self._arn(PACKAGE_KIND, f"{group.name}/{version}"), group.name, version,
                    fields, created, request.get("ModelApprovalStatus") or "PendingManualApproval",
                )  # fmt: skip
            else:
                arn = self._arn(PACKAGE_KIND, package_name)
                if package_key(package_name, None) in self._packages:
                    raise validation_error(f'Cannot create already existing model package "{arn}".')
                package = ModelPackage(package_name, arn, None, None, fields, created)
            package.customer_metadata = dict(request.get("CustomerMetadataProperties") or {})
            self._packages[package.key] = package
        self.context.tags.add(package.arn, request.get("Tags"))
        return {"ModelPackageArn": package.arn}

    @operation("DescribeModelPackage")
    def describe_model_package(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.package(request["ModelPackageName"]).describe()

    @operation("ListModelPackages")
    def list_model_packages(self, request: dict[str, Any]) -> dict[str, Any]:
        wanted_group = request.get("ModelPackageGroupName")
        # A group filter lists that group's versions; otherwise the type says which (default: unversioned).
        kind = "Versioned" if wanted_group else request.get("ModelPackageType", "Unversioned")
        group_name = parse_reference(wanted_group).name.lower() if wanted_group else None
        status = request.get("ModelApprovalStatus")
        with self._lock:
            packages = [
                package
                for package in self._packages.values()
                if (kind == "Both" or (package.version is not None) == (kind == "Versioned"))
                and (group_name is None or (package.group or "").lower() == group_name)
                and (status is None or package.approval_status == status)
            ]
        page, token = self._page(request, packages)
        return {"ModelPackageSummaryList": [package.summary() for package in page], **token}

    @operation("UpdateModelPackage")
    def update_model_package(self, request: dict[str, Any]) -> dict[str, Any]:
        package = self.package(request["ModelPackageArn"])
        added = request.get("CustomerMetadataProperties") or {}
        removed = request.get("CustomerMetadataPropertiesToRemove") or []
        if both := sorted(set(added) & set(removed)):
            raise validation_error(f"Customer metadata keys {both} are both added and removed.")
        if request.get("InferenceSpecification"):
            _check_containers(request["InferenceSpecification"])
        with self._lock:
            if "ModelApprovalStatus" in request:
                if package.version is None:
                    raise validation_error("ModelApprovalStatus applies to versioned model packages only.")
                package.approval_status = request["ModelApprovalStatus"]
            if "ApprovalDescription" in request:
                package.approval_description = request["ApprovalDescription"]
            metadata = {k: v for k, v in {**package.customer_metadata, **added}.items() if k not in removed}
            if len(metadata) > 50:
                raise validation_error("A model package has at most 50 customer metadata properties.")
            package.customer_metadata = metadata
            if additional := request.get("AdditionalInferenceSpecificationsToAdd"):
                known = package.fields.get("AdditionalInferenceSpecifications", [])
                if len(known) + len(additional) > MAX_ADDITIONAL_INFERENCE_SPECIFICATIONS:
                    raise validation_error(
                        f"A model package has at most {MAX_ADDITIONAL_INFERENCE_SPECIFICATIONS} "
                        "additional inference specifications."
                    )
                package.fields["AdditionalInferenceSpecifications"] = [*known, *additional]
            package.fields.update({key: request[key] for key in _REPLACED_ON_UPDATE if key in request})
            package.modified = now()
        return {"ModelPackageArn": package.arn}

    @operation("DeleteModelPackage")
    def delete_model_package(self, request: dict[str, Any]) -> dict[str, Any]:
        package = self.package(request["ModelPackageName"])
        with self._lock:
            self._packages.pop(package.key, None)
        self.context.tags.forget(package.arn)
        return {}

    # -- for hosting ----------------------------------------------------------------------------
    def package(self, name_or_arn: str) -> ModelPackage:
        """The package a request names; SageMaker's ValidationException when there is none."""
        reference = self._reference(name_or_arn, PACKAGE_KIND)
        with self._lock:
            package = self._packages.get(reference.key) if reference else None
        if package is None:
            shown = self._arn(PACKAGE_KIND, reference.key) if reference else name_or_arn
            raise validation_error(f"ModelPackage {shown} does not exist.")
        return package

    def inference_container(self, name_or_arn: str) -> dict[str, Any]:
        """The one container of a package's InferenceSpecification (what CreateModel deploys)."""
        package = self.package(name_or_arn)
        containers = (package.fields.get("InferenceSpecification") or {}).get("Containers") or []
        if not containers:
            raise validation_error(f"Model package {package.arn} has no InferenceSpecification to deploy.")
        if len(containers) > 1:
            raise validation_error(
                f"local_aws serves one container per model; {package.arn} has {len(containers)}."
            )
        return dict(containers[0])

    # -- lookups --------------------------------------------------------------------------------
    def _arn(self, kind: str, name: str) -> str:
        return self.context.arn("sagemaker", f"{kind}/{name.lower()}")

    def _reference(self, value: str, kind: str) -> Reference | None:
        reference = parse_reference(value)
        if reference is None or (reference.kind is not None and reference.kind != kind):
            return None
        if reference.region is not None and (reference.region, reference.account) != (
            self.context.region,
            self.context.account_id,
        ):
            return None  # another account's or region's registry
        return reference

    def _group(self, name_or_arn: str) -> PackageGroup:
        reference = self._reference(name_or_arn, GROUP_KIND)
        with self._lock:
            found = reference is not None and reference.version is None
            group = self._groups.get(reference.name.lower()) if found else None
        if group is None:
            shown = self._arn(GROUP_KIND, reference.name) if reference else name_or_arn
            raise validation_error(f"ModelPackageGroup {shown} does not exist.")
        return group

    @staticmethod
    def _page(request: dict[str, Any], records: list[Any]) -> tuple[list[Any], dict[str, str]]:
        # The registry's List* sort ascending unless told otherwise (jobs and models: descending).
        return list_page(
            request,
            records,
            name=lambda record: record.name,
            times={"CreationTime": lambda record: record.created},
            sort_keys=_BY_NAME_OR_CREATION,
            default_order="Ascending",
        )


def _check_containers(specification: dict[str, Any] | None) -> None:
    for container in (specification or {}).get("Containers", []):
        if url := container.get("ModelDataUrl"):
            s3_location(url)
