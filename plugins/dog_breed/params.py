"""The DAG's Params: defaults, JSON schemas, descriptions, and a typed view of them.

``PARAM_SPECS`` feeds ``airflow.sdk.Param`` in the DAG file (the trigger form in the
UI is generated from the schemas); ``PipelineSettings.from_params`` turns the rendered
``params`` mapping into one typed, validated object the tasks use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

AWS_CONN_ID = "aws_default"
DEFAULT_DATASET_URI = "s3://dog-breed-pipeline/dogImages"
DEFAULT_ARTIFACTS_URI = "s3://dog-breed-pipeline/artifacts"
DEFAULT_ROLE_ARN = "arn:aws:iam::123456789012:role/DogBreedSageMakerExecution"
TUNING_STRATEGIES = ("Bayesian", "Random", "Grid", "Hyperband")

_S3_URI = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"
_ROLE_ARN = r"^arn:aws[a-z\-]*:iam::[0-9]{12}:role/[\w+=,.@\-/]+$"
_SAGEMAKER_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
_INSTANCE_TYPE = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"


def _spec(default: Any, description: str, **schema: Any) -> dict[str, Any]:
    return {"default": default, "description": description, **schema}


PARAM_SPECS: dict[str, dict[str, Any]] = {
    "dataset_s3_uri": _spec(
        DEFAULT_DATASET_URI,
        "dogImages root in S3: train/, valid/, test/ each holding NNN.Breed_Name/*.jpg.",
        type="string",
        pattern=_S3_URI,
    ),
    "artifacts_s3_uri": _spec(
        DEFAULT_ARTIFACTS_URI,
        "Prefix for everything the pipeline writes: code/, output/, checkpoints/, debugger/, profiler/.",
        type="string",
        pattern=_S3_URI,
    ),
    "sagemaker_role_arn": _spec(
        DEFAULT_ROLE_ARN,
        "SageMaker execution role ARN (see README: Running on real AWS).",
        type="string",
        pattern=_ROLE_ARN,
    ),
    "region": _spec(
        "us-east-1", "AWS region of every resource.", type="string", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$"
    ),
    "tuning_instance_type": _spec(
        "ml.m5.xlarge", "Instance type of each tuning trial.", type="string", pattern=_INSTANCE_TYPE
    ),
    "training_instance_type": _spec(
        "ml.m5.xlarge",
        "Instance type of the final training job (ml.g4dn.xlarge is faster if your quota allows).",
        type="string",
        pattern=_INSTANCE_TYPE,
    ),
    "training_instance_count": _spec(
        1,
        "Instances of the final training job; more than 1 runs PyTorch DDP across hosts.",
        type="integer",
        minimum=1,
        maximum=8,
    ),
    "endpoint_instance_type": _spec(
        "ml.m5.large", "Instance type behind the endpoint.", type="string", pattern=_INSTANCE_TYPE
    ),
    "tuning_max_jobs": _spec(
        4, "Tuning trials in total (ignored by Grid).", type="integer", minimum=1, maximum=100
    ),
    "tuning_max_parallel_jobs": _spec(2, "Tuning trials at once.", type="integer", minimum=1, maximum=20),
    "tuning_strategy": _spec(
        "Bayesian", "Tuning search strategy.", type="string", enum=list(TUNING_STRATEGIES)
    ),
    "tuning_epochs": _spec(2, "Epochs per tuning trial.", type="integer", minimum=1, maximum=100),
    "lr_min": _spec(1e-4, "Learning rate range, lower bound (log scale).", type="number", exclusiveMinimum=0),
    "lr_max": _spec(1e-2, "Learning rate range, upper bound.", type="number", exclusiveMinimum=0),
    "batch_sizes": _spec(
        [32, 64],
        "Batch sizes the tuner may choose from.",
        type="array",
        items={"type": "integer", "minimum": 1, "maximum": 1024},
        minItems=1,
        uniqueItems=True,
    ),
    "weight_decay_min": _spec(
        1e-5, "Weight decay range, lower bound (log scale).", type="number", exclusiveMinimum=0
    ),
    "weight_decay_max": _spec(1e-3, "Weight decay range, upper bound.", type="number", exclusiveMinimum=0),
    "epochs": _spec(5, "Epochs of the final training job.", type="integer", minimum=1, maximum=200),
    "image_size": _spec(224, "Square input size in pixels.", type="integer", minimum=32, maximum=512),
    "pretrained": _spec(
        True, "Start from ImageNet weights (needs internet inside the container).", type="boolean"
    ),
    "debugger_tensor_rules": _spec(
        False,
        "Add Debugger tensor rules (vanishing gradient, overfit, ...). They need the smdebug hook, "
        "which PyTorch 2.x containers lack; leave off unless you use a container with smdebug.",
        type="boolean",
    ),
    "training_max_runtime_hours": _spec(
        4, "Stop a training job or tuning trial after this long.", type="integer", minimum=1, maximum=24
    ),
    "accuracy_threshold": _spec(
        0.7, "Deploy only if test accuracy reaches this.", type="number", minimum=0, maximum=1
    ),
    "champion_tolerance": _spec(
        0.0,
        "Deploy a model whose test accuracy is at most this much below the live model's.",
        type="number",
        minimum=0,
        maximum=1,
    ),
    "autoscaling_min_capacity": _spec(
        1, "Endpoint instances, at least.", type="integer", minimum=1, maximum=20
    ),
    "autoscaling_max_capacity": _spec(
        3, "Endpoint instances, at most.", type="integer", minimum=1, maximum=20
    ),
    "autoscaling_target_invocations": _spec(
        10, "Scale out past this many invocations per instance per minute.", type="integer", minimum=1
    ),
    "scale_out_cooldown_s": _spec(30, "Seconds between scale-outs.", type="integer", minimum=0, maximum=3600),
    "scale_in_cooldown_s": _spec(120, "Seconds between scale-ins.", type="integer", minimum=0, maximum=3600),
    "lambda_memory_mb": _spec(512, "Lambda memory.", type="integer", minimum=128, maximum=10240),
    "lambda_timeout_s": _spec(
        60, "Lambda timeout (the endpoint allows 60 s).", type="integer", minimum=3, maximum=900
    ),
    "lambda_provisioned_concurrency": _spec(
        2,
        "Provisioned concurrency on the Lambda alias (0 removes it).",
        type="integer",
        minimum=0,
        maximum=100,
    ),
    "endpoint_name": _spec(
        "dog-breed-classifier", "SageMaker endpoint name.", type="string", pattern=_SAGEMAKER_NAME
    ),
    "lambda_function_name": _spec(
        "dog-breed-classifier",
        "Lambda function fronting the endpoint.",
        type="string",
        pattern=r"^[a-zA-Z0-9\-_]{1,56}$",
    ),
    "smoke_test_images": _spec(
        5, "Test images the smoke test sends.", type="integer", minimum=1, maximum=100
    ),
}


class SettingsError(ValueError):
    """Params that are individually valid but contradict each other."""


@dataclass(frozen=True)
class PipelineSettings:
    """Typed view of one run's Params."""

    dataset_s3_uri: str
    artifacts_s3_uri: str
    sagemaker_role_arn: str
    region: str
    tuning_instance_type: str
    training_instance_type: str
    training_instance_count: int
    endpoint_instance_type: str
    tuning_max_jobs: int
    tuning_max_parallel_jobs: int
    tuning_strategy: str
    tuning_epochs: int
    lr_min: float
    lr_max: float
    batch_sizes: tuple[int, ...]
    weight_decay_min: float
    weight_decay_max: float
    epochs: int
    image_size: int
    pretrained: bool
    debugger_tensor_rules: bool
    training_max_runtime_hours: int
    accuracy_threshold: float
    champion_tolerance: float
    autoscaling_min_capacity: int
    autoscaling_max_capacity: int
    autoscaling_target_invocations: int
    scale_out_cooldown_s: int
    scale_in_cooldown_s: int
    lambda_memory_mb: int
    lambda_timeout_s: int
    lambda_provisioned_concurrency: int
    endpoint_name: str
    lambda_function_name: str
    smoke_test_images: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PipelineSettings:
        """Typed settings from a run's ``params`` (missing keys take their defaults)."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = params.get(field.name, PARAM_SPECS[field.name]["default"])
            kind = PARAM_SPECS[field.name]["type"]
            if kind == "integer":
                values[field.name] = int(raw)
            elif kind == "number":
                values[field.name] = float(raw)
            elif kind == "boolean":
                values[field.name] = _as_bool(raw)
            elif kind == "array":
                values[field.name] = tuple(int(v) for v in raw)
            else:
                values[field.name] = str(raw).rstrip("/") if field.name.endswith("_uri") else str(raw)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise SettingsError on contradictions the per-field schemas cannot express."""
        problems = []
        if self.lr_min > self.lr_max:
            problems.append(f"lr_min {self.lr_min} > lr_max {self.lr_max}")
        if self.weight_decay_min > self.weight_decay_max:
            problems.append(
                f"weight_decay_min {self.weight_decay_min} > weight_decay_max {self.weight_decay_max}"
            )
        if self.autoscaling_min_capacity > self.autoscaling_max_capacity:
            problems.append(
                f"autoscaling_min_capacity {self.autoscaling_min_capacity} > "
                f"autoscaling_max_capacity {self.autoscaling_max_capacity}"
            )
        if self.tuning_max_parallel_jobs > self.tuning_max_jobs and self.tuning_strategy != "Grid":
            problems.append(
                f"tuning_max_parallel_jobs {self.tuning_max_parallel_jobs} > "
                f"tuning_max_jobs {self.tuning_max_jobs}"
            )
        if not self.batch_sizes:
            problems.append("batch_sizes is empty")
        if problems:
            raise SettingsError("; ".join(problems))


def _as_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise SettingsError(f"not a boolean: {raw!r}")
