"""What the model registry keeps about one trained model, and what two versions' records say
side by side. Pure: the tasks and operators read and write the registry and S3.

Every final model is a version of the model package group ``model_package_group``. Its
``CustomerMetadataProperties`` name where it came from (``METADATA_*``: training and tuning
job, DAG run, dataset) and its test metrics; its ``ModelMetrics.ModelQuality.Statistics``
points at the per-breed accuracy report (``quality_report``) that the pipeline writes beside
``model.tar.gz``. A retried registration finds its version by ``METADATA_TRAINING_JOB``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from dog_breed.s3uri import split_s3_uri

GROUP_DESCRIPTION = (
    "ResNet50 dog-breed classifier (Udacity dogImages): one version per model the "
    "dog_breed_pipeline DAG trained, with its test metrics and per-breed accuracy report."
)
REPORT_FILE = "model-quality.json"
REPORT_CONTENT_TYPE = "application/json"
# CustomerMetadataProperties keys (AWS allows letters, digits, spaces and _.:/=+-@).
METADATA_TRAINING_JOB = "TrainingJobName"
METADATA_TUNING_JOB = "TuningJobName"
METADATA_DAG_ID = "DagId"
METADATA_DAG_RUN = "DagRunId"
METADATA_DATASET = "DatasetS3Uri"
METADATA_TEST_ACCURACY = "TestAccuracy"
METADATA_TEST_LOSS = "TestLoss"
_METADATA_VALUE_MAX = 256
_DESCRIPTION_MAX = 1024
_METADATA_FORBIDDEN = re.compile(r"[^\w .:/=+\-@]")
_VERSION = re.compile(r":model-package/(?P<group>[^/]+)/(?P<version>\d+)$")


def report_uri(model_artifact_uri: str) -> str:
    """Where a model's quality report goes: beside its ``model.tar.gz``."""
    split_s3_uri(model_artifact_uri)  # an s3:// URI, or a clear error
    return f"{model_artifact_uri.rsplit('/', 1)[0]}/{REPORT_FILE}"


def output_archive_uri(model_artifact_uri: str) -> str:
    """SageMaker puts ``SM_OUTPUT_DATA_DIR`` as ``output.tar.gz`` beside ``model.tar.gz``."""
    split_s3_uri(model_artifact_uri)
    return f"{model_artifact_uri.rsplit('/', 1)[0]}/output.tar.gz"


def quality_report(evaluation: Mapping[str, Any], *, training_job: str, test_data_uri: str) -> dict[str, Any]:
    """The per-breed accuracy report, from train.py's ``evaluation.json`` (its test set per class).

    ``multiclass_classification_metrics`` follows the layout of SageMaker Model Monitor's
    model-quality statistics (a metric is ``{"value": ...}``), so tools reading those find the
    accuracy; ``per_class`` is this pipeline's: one entry per breed, in class order.
    """
    per_class = evaluation.get("per_class")
    if not isinstance(per_class, list) or not per_class:
        raise ValueError(f"the evaluation of {training_job} has no per-class results")
    breeds = []
    for entry in per_class:
        total, correct = int(entry["total"]), int(entry["correct"])
        if not 0 <= correct <= total:
            raise ValueError(f"{training_job}: {entry['class']} has {correct} correct of {total}")
        breeds.append(
            {
                "class": str(entry["class"]),
                "correct": correct,
                "total": total,
                "accuracy": correct / total if total else None,
            }
        )
    images = sum(b["total"] for b in breeds)
    return {
        "version": 0.0,
        "dataset": {"split": evaluation.get("split", "test"), "item_count": images, "s3_uri": test_data_uri},
        "training_job": training_job,
        "multiclass_classification_metrics": {
            "accuracy": {"value": sum(b["correct"] for b in breeds) / images if images else 0.0},
            "cross_entropy_loss": {"value": float(evaluation["loss"])},
        },
        "per_class": breeds,
    }


def report_bytes(report: Mapping[str, Any]) -> bytes:
    return json.dumps(report, indent=2, sort_keys=True).encode()


def content_digest(payload: bytes) -> str:
    """``ContentDigest`` of a MetricsSource: ``sha256:<hex>``."""
    return f"sha256:{hashlib.sha256(payload).hexdigest()}"


def report_metrics(report: Mapping[str, Any]) -> tuple[float, float]:
    """(test accuracy, test loss) of a quality report."""
    metrics = report["multiclass_classification_metrics"]
    return float(metrics["accuracy"]["value"]), float(metrics["cross_entropy_loss"]["value"])


def metadata_value(value: Any) -> str:
    """A value as CustomerMetadataProperties accepts it: allowed characters, at most 256."""
    text = _METADATA_FORBIDDEN.sub("_", str(value))
    return text[:_METADATA_VALUE_MAX] or "-"


def customer_metadata(
    *,
    training_job: str,
    tuning_job: str,
    dag_id: str,
    dag_run_id: str,
    dataset_s3_uri: str,
    test_accuracy: float,
    test_loss: float,
) -> dict[str, str]:
    values = {
        METADATA_TRAINING_JOB: training_job,
        METADATA_TUNING_JOB: tuning_job,
        METADATA_DAG_ID: dag_id,
        METADATA_DAG_RUN: dag_run_id,
        METADATA_DATASET: dataset_s3_uri,
        METADATA_TEST_ACCURACY: f"{test_accuracy:.6f}",
        METADATA_TEST_LOSS: f"{test_loss:.6f}",
    }
    return {key: metadata_value(value) for key, value in values.items()}


def package_description(training_job: str, test_accuracy: float, dag_run_id: str) -> str:
    return clip(f"{training_job}: test accuracy {test_accuracy:.4f}; trained by DAG run {dag_run_id}")


def clip(text: str, limit: int = _DESCRIPTION_MAX) -> str:
    """Descriptions (package, approval) allow 1024 characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def rollback_description(endpoint_name: str, by: str, reason: str, earlier: str | None = None) -> str:
    """The ApprovalDescription of a version that was rolled back off ``endpoint_name``: by whom
    (SageMaker's auto-rollback, the smoke test), why, and the approval it replaces (the registry
    keeps one description, so the earlier decision stays readable in it)."""
    said = f"Rejected: rolled back from endpoint {endpoint_name} by {by}: {reason.strip()}"
    return clip(f"{said} (was: {earlier.strip()})" if earlier and earlier.strip() else said)


def package_version(arn: str | None) -> int | None:
    found = _VERSION.search(arn or "")
    return int(found["version"]) if found else None


@dataclass(frozen=True)
class VersionSummary:
    """One version as the reviewer compares it (from DescribeModelPackage and its report)."""

    package_arn: str
    version: int | None
    approval_status: str | None
    approval_description: str | None
    training_job: str | None
    tuning_job: str | None
    dag_run: str | None
    dataset: str | None
    test_accuracy: float | None
    test_loss: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def version_summary(package: Mapping[str, Any]) -> VersionSummary:
    metadata = package.get("CustomerMetadataProperties") or {}
    return VersionSummary(
        package_arn=package["ModelPackageArn"],
        version=package.get("ModelPackageVersion") or package_version(package["ModelPackageArn"]),
        approval_status=package.get("ModelApprovalStatus"),
        approval_description=package.get("ApprovalDescription"),
        training_job=metadata.get(METADATA_TRAINING_JOB),
        tuning_job=metadata.get(METADATA_TUNING_JOB),
        dag_run=metadata.get(METADATA_DAG_RUN),
        dataset=metadata.get(METADATA_DATASET),
        test_accuracy=_float_or_none(metadata.get(METADATA_TEST_ACCURACY)),
        test_loss=_float_or_none(metadata.get(METADATA_TEST_LOSS)),
    )


def statistics_uri(package: Mapping[str, Any]) -> str | None:
    """The S3 URI of a version's ModelQuality statistics (its quality report)."""
    quality = ((package.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}
    return quality.get("S3Uri")


@dataclass(frozen=True)
class BreedChange:
    breed: str
    champion: float
    challenger: float

    @property
    def change(self) -> float:
        return self.challenger - self.champion


def breed_changes(challenger: Mapping[str, Any], champion: Mapping[str, Any]) -> list[BreedChange]:
    """Per-breed accuracy of the challenger against the champion, worst regression first
    (breeds both were tested on; ties by name)."""
    before = _accuracies(champion)
    changes = [
        BreedChange(breed, before[breed], accuracy)
        for breed, accuracy in _accuracies(challenger).items()
        if breed in before
    ]
    return sorted(changes, key=lambda c: (c.change, c.breed))


def _accuracies(report: Mapping[str, Any]) -> dict[str, float]:
    return {b["class"]: b["accuracy"] for b in report.get("per_class", []) if b.get("accuracy") is not None}


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
