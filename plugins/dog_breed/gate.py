"""Champion/challenger gate: deploy only a model at least as good as the threshold and the live one.

The live model is the model-registry version behind the endpoint (``TAG_MODEL_PACKAGE_ARN``;
its test accuracy is in the version's customer metadata); an endpoint deployed before the
registry keeps its test accuracy as a tag (``TAG_TEST_ACCURACY``). Pure: the tags are read and
written by ``dog_breed.hooks.PipelineSageMakerHook``, the registry by the gate task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from dog_breed.metrics import TEST_ACCURACY_METRIC

TAG_PREFIX = "dog-breed:"
TAG_TEST_ACCURACY = f"{TAG_PREFIX}test-accuracy"
TAG_MODEL_NAME = f"{TAG_PREFIX}model-name"
TAG_TRAINING_JOB = f"{TAG_PREFIX}training-job"
TAG_DAG_RUN = f"{TAG_PREFIX}dag-run"
TAG_MODEL_PACKAGE_ARN = f"{TAG_PREFIX}model-package-arn"
CHAMPION_TAG_KEYS = (TAG_TEST_ACCURACY, TAG_MODEL_NAME, TAG_TRAINING_JOB, TAG_DAG_RUN, TAG_MODEL_PACKAGE_ARN)
# Kept on each endpoint config the pipeline creates: the config live before it (the rollback target).
TAG_PREVIOUS_ENDPOINT_CONFIG = f"{TAG_PREFIX}previous-endpoint-config"


@dataclass(frozen=True)
class GateDecision:
    deploy: bool
    reason: str
    challenger_accuracy: float
    champion_accuracy: float | None
    threshold: float

    def as_dict(self) -> dict:
        return asdict(self)


def decide(
    challenger_accuracy: float,
    threshold: float,
    champion_accuracy: float | None,
    tolerance: float = 0.0,
) -> GateDecision:
    """Deploy when the challenger reaches the threshold and is not worse than the champion
    by more than ``tolerance`` (a retrained model on fresher data may be worth a small dip)."""
    args = {
        "challenger_accuracy": challenger_accuracy,
        "champion_accuracy": champion_accuracy,
        "threshold": threshold,
    }
    if challenger_accuracy < threshold:
        return GateDecision(
            False, f"test accuracy {challenger_accuracy:.4f} is below the threshold {threshold:.4f}", **args
        )
    if champion_accuracy is not None and challenger_accuracy < champion_accuracy - tolerance:
        return GateDecision(
            False,
            f"test accuracy {challenger_accuracy:.4f} is below the live model's {champion_accuracy:.4f}"
            + (f" minus the tolerance {tolerance:.4f}" if tolerance else ""),
            **args,
        )
    against = "no live model" if champion_accuracy is None else f"live model {champion_accuracy:.4f}"
    return GateDecision(
        True, f"test accuracy {challenger_accuracy:.4f} >= threshold {threshold:.4f} and {against}", **args
    )


def final_metric(training_description: Mapping, metric_name: str = TEST_ACCURACY_METRIC) -> float:
    """A metric from DescribeTrainingJob's FinalMetricDataList; a clear error when it is missing."""
    for item in training_description.get("FinalMetricDataList") or []:
        if item.get("MetricName") == metric_name:
            return float(item["Value"])
    job = training_description.get("TrainingJobName", "?")
    raise ValueError(f"training job {job} reported no {metric_name!r} metric (FinalMetricDataList)")


def champion_accuracy(endpoint_tags: Mapping[str, str]) -> float | None:
    """The live model's test accuracy, or None when there is no tagged live model."""
    raw = endpoint_tags.get(TAG_TEST_ACCURACY)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def champion_tags(
    *, test_accuracy: float, model_name: str, training_job: str, dag_run: str, model_package_arn: str
) -> dict[str, str]:
    """Tags that make a deployed model the champion (on its endpoint config, then its endpoint)."""
    return {
        TAG_TEST_ACCURACY: f"{test_accuracy:.6f}",
        TAG_MODEL_NAME: model_name,
        TAG_TRAINING_JOB: training_job,
        TAG_DAG_RUN: dag_run[:256],
        TAG_MODEL_PACKAGE_ARN: model_package_arn,
    }
