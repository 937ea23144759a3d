"""The DAG's Params, each declared once: a field of ``PipelineSettings``.

A field's type, default, description, trigger-form section and JSON-schema constraints sit
in its one declaration. From the fields come ``PARAM_SPECS`` (the keyword arguments of each
``airflow.sdk.Param``: the DAG file's ``params`` and the UI's trigger form, grouped by
section) and ``PipelineSettings.from_params``, which turns a run's rendered ``params`` into
the typed, checked object the tasks use. Adding a Param is adding a field here.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any

AWS_CONN_ID = "aws_default"
DEFAULT_DATASET_URI = "s3://dog-breed-pipeline/dogImages"
DEFAULT_ARTIFACTS_URI = "s3://dog-breed-pipeline/artifacts"
DEFAULT_ROLE_ARN = "arn:aws:iam::123456789012:role/DogBreedSageMakerExecution"
TUNING_STRATEGIES = ("Bayesian", "Random", "Grid", "Hyperband")
APPROVAL_MODES = ("auto", "manual", "gate-then-manual")  # see dog_breed.approval
TRAFFIC_ROUTINGS = ("ALL_AT_ONCE", "CANARY", "LINEAR")

# Trigger-form sections, in the order the form shows them: what a run changes most comes first.
TRAINING = "Training"
TUNING = "Tuning"
DATA = "Data"
GATE = "Gate and approval"
ENDPOINT = "Endpoint and rollout"
AUTOSCALING = "Autoscaling"
LAMBDA = "Lambda"
SMOKE_TEST = "Smoke test"
SECTIONS = (TRAINING, TUNING, DATA, GATE, ENDPOINT, AUTOSCALING, LAMBDA, SMOKE_TEST)

# JSON Schema dialect of every Param. Draft-07 has every keyword used here, and jsonschema checks
# a draft-07 schema against its metaschema about 3x faster than the default 2020-12 one, which
# Airflow does for each Param on every DAG parse and every trigger.
SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", tuple: "array"}

_S3_URI = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"
_ROLE_ARN = r"^arn:aws[a-z\-]*:iam::[0-9]{12}:role/[\w+=,.@\-/]+$"
_SAGEMAKER_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
_INSTANCE_TYPE = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"


def param(default: Any, description: str, section: str, **schema: Any) -> Any:
    """One Param: a dataclass field whose metadata carries the form section and the JSON schema
    (``type`` comes from the field's annotation)."""
    if section not in SECTIONS:
        raise ValueError(f"unknown section {section!r}; use one of {SECTIONS}")
    return field(default=default, metadata={"description": description, "section": section, "schema": schema})


class SettingsError(ValueError):
    """Params that are individually valid but contradict each other."""


@dataclass(frozen=True)
class PipelineSettings:
    """One run's Params, typed. Declaring a field here declares the Param."""

    # -- training
    epochs: int = param(5, "Epochs of the final training job.", TRAINING, minimum=1, maximum=200)
    image_size: int = param(224, "Square input size in pixels.", TRAINING, minimum=32, maximum=512)
    pretrained: bool = param(
        True, "Start from ImageNet weights (needs internet inside the container).", TRAINING
    )
    training_instance_type: str = param(
        "ml.m5.xlarge",
        "Instance type of the final training job (ml.g4dn.xlarge is faster if your quota allows).",
        TRAINING,
        pattern=_INSTANCE_TYPE,
    )
    training_instance_count: int = param(
        1,
        "Instances of the final training job; more than 1 runs PyTorch DDP across hosts.",
        TRAINING,
        minimum=1,
        maximum=8,
    )
    training_max_runtime_hours: int = param(
        4, "Stop a training job or tuning trial after this long.", TRAINING, minimum=1, maximum=24
    )
    debugger_tensor_rules: bool = param(
        False,
        "Add Debugger tensor rules (vanishing gradient, overfit, ...). They need the smdebug hook, "
        "which PyTorch 2.x containers lack; leave off unless you use a container with smdebug.",
        TRAINING,
    )
    # -- tuning
    tuning_max_jobs: int = param(
        4, "Tuning trials in total (ignored by Grid).", TUNING, minimum=1, maximum=100
    )
    tuning_max_parallel_jobs: int = param(2, "Tuning trials at once.", TUNING, minimum=1, maximum=20)
    tuning_epochs: int = param(2, "Epochs per tuning trial.", TUNING, minimum=1, maximum=100)
    tuning_strategy: str = param("Bayesian", "Tuning search strategy.", TUNING, enum=list(TUNING_STRATEGIES))
    lr_min: float = param(1e-4, "Learning rate range, lower bound (log scale).", TUNING, exclusiveMinimum=0)
    lr_max: float = param(1e-2, "Learning rate range, upper bound.", TUNING, exclusiveMinimum=0)
    batch_sizes: tuple[int, ...] = param(
        (32, 64),
        "Batch sizes the tuner may choose from.",
        TUNING,
        items={"type": "integer", "minimum": 1, "maximum": 1024},
        minItems=1,
        uniqueItems=True,
    )
    weight_decay_min: float = param(
        1e-5, "Weight decay range, lower bound (log scale).", TUNING, exclusiveMinimum=0
    )
    weight_decay_max: float = param(1e-3, "Weight decay range, upper bound.", TUNING, exclusiveMinimum=0)
    tuning_instance_type: str = param(
        "ml.m5.xlarge", "Instance type of each tuning trial.", TUNING, pattern=_INSTANCE_TYPE
    )
    # -- data and the AWS account
    dataset_s3_uri: str = param(
        DEFAULT_DATASET_URI,
        "dogImages root in S3: train/, valid/, test/ each holding NNN.Breed_Name/*.jpg.",
        DATA,
        pattern=_S3_URI,
    )
    artifacts_s3_uri: str = param(
        DEFAULT_ARTIFACTS_URI,
        "Prefix for everything the pipeline writes: code/, output/, checkpoints/, debugger/, profiler/.",
        DATA,
        pattern=_S3_URI,
    )
    sagemaker_role_arn: str = param(
        DEFAULT_ROLE_ARN,
        "SageMaker execution role ARN (see README: Running on real AWS).",
        DATA,
        pattern=_ROLE_ARN,
    )
    region: str = param(
        "us-east-1", "AWS region of every resource.", DATA, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$"
    )
    # -- gate and approval
    accuracy_threshold: float = param(
        0.7, "Deploy only if test accuracy reaches this.", GATE, minimum=0, maximum=1
    )
    champion_tolerance: float = param(
        0.0,
        "Deploy a model whose test accuracy is at most this much below the live model's.",
        GATE,
        minimum=0,
        maximum=1,
    )
    model_package_group: str = param(
        "dog-breed-classifier",
        "Model registry group every trained model is registered in, as a new version (created if missing).",
        GATE,
        pattern=_SAGEMAKER_NAME,
    )
    approval: str = param(
        "auto",
        "Who approves a new version: auto (the gate's decision), manual (a person, in the run's "
        "review task), gate-then-manual (the gate rejects losers, a person approves the rest).",
        GATE,
        enum=list(APPROVAL_MODES),
    )
    approval_timeout_hours: float = param(
        24.0,
        "A review nobody answers within this many hours rejects the version (timed out).",
        GATE,
        exclusiveMinimum=0,
        maximum=720,
    )
    # -- endpoint and rollout
    endpoint_name: str = param(
        "dog-breed-classifier", "SageMaker endpoint name.", ENDPOINT, pattern=_SAGEMAKER_NAME
    )
    endpoint_instance_type: str = param(
        "ml.m5.large", "Instance type behind the endpoint.", ENDPOINT, pattern=_INSTANCE_TYPE
    )
    rollout_traffic_routing: str = param(
        "CANARY",
        "How a retraining run shifts traffic to the new model (blue/green). A canary needs at least "
        "2 instances (autoscaling_min_capacity); with 1 the run uses ALL_AT_ONCE and bakes.",
        ENDPOINT,
        enum=list(TRAFFIC_ROUTINGS),
    )
    rollout_canary_percent: int = param(
        25,
        "CANARY: share of the new fleet's instances that take traffic first (rounded down to whole "
        "instances, at least one, at most half).",
        ENDPOINT,
        minimum=1,
        maximum=50,
    )
    rollout_linear_step_percent: int = param(
        25, "LINEAR: share of the instances added to the new fleet's traffic per step.", ENDPOINT,
        minimum=10, maximum=50,
    )  # fmt: skip
    rollout_wait_interval_s: int = param(
        300,
        "Seconds of baking after each traffic shift (ALL_AT_ONCE: after the one shift), watched by the "
        "rollback alarms.",
        ENDPOINT,
        minimum=0,
        maximum=3600,
    )
    rollout_termination_wait_s: int = param(
        300,
        "Seconds of final baking with all traffic on the new fleet before the old one is terminated.",
        ENDPOINT,
        minimum=0,
        maximum=3600,
    )
    rollout_max_execution_s: int = param(
        3600,
        "The whole blue/green update must finish within this, or SageMaker rolls it back.",
        ENDPOINT,
        minimum=600,
        maximum=28800,
    )
    latency_p99_threshold_ms: int = param(
        2000,
        "Roll back when the model's p99 latency (ModelLatency) stays above this during a rollout.",
        ENDPOINT,
        minimum=1,
        maximum=60000,
    )
    four_xx_share_threshold: float = param(
        0.05,
        "Roll back when more than this share of a minute's requests get a 4XX answer during a rollout "
        "(a model that refuses what the registry version says it accepts).",
        ENDPOINT,
        exclusiveMinimum=0,
        maximum=1,
    )
    # -- autoscaling
    autoscaling_min_capacity: int = param(
        1, "Endpoint instances, at least.", AUTOSCALING, minimum=1, maximum=20
    )
    autoscaling_max_capacity: int = param(
        3, "Endpoint instances, at most.", AUTOSCALING, minimum=1, maximum=20
    )
    autoscaling_target_invocations: int = param(
        10, "Scale out past this many invocations per instance per minute.", AUTOSCALING, minimum=1
    )
    scale_out_cooldown_s: int = param(30, "Seconds between scale-outs.", AUTOSCALING, minimum=0, maximum=3600)
    scale_in_cooldown_s: int = param(120, "Seconds between scale-ins.", AUTOSCALING, minimum=0, maximum=3600)
    # -- Lambda
    lambda_function_name: str = param(
        "dog-breed-classifier",
        "Lambda function fronting the endpoint.",
        LAMBDA,
        pattern=r"^[a-zA-Z0-9\-_]{1,56}$",
    )
    lambda_memory_mb: int = param(512, "Lambda memory.", LAMBDA, minimum=128, maximum=10240)
    lambda_timeout_s: int = param(
        60, "Lambda timeout (the endpoint allows 60 s).", LAMBDA, minimum=3, maximum=900
    )
    lambda_provisioned_concurrency: int = param(
        2, "Provisioned concurrency on the Lambda alias (0 removes it).", LAMBDA, minimum=0, maximum=100
    )
    # -- smoke test
    smoke_test_images: int = param(5, "Test images the smoke test sends.", SMOKE_TEST, minimum=1, maximum=100)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PipelineSettings:
        """Typed settings from a run's ``params`` (missing keys take their defaults)."""
        types = _field_types()
        values = {
            item.name: _coerce(item.name, types[item.name], params[item.name])
            for item in fields(cls)
            if item.name in params
        }
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
        waits = self.rollout_wait_interval_s + self.rollout_termination_wait_s
        if self.rollout_max_execution_s <= waits:
            problems.append(
                f"rollout_max_execution_s {self.rollout_max_execution_s} must exceed the waits "
                f"(rollout_wait_interval_s + rollout_termination_wait_s = {waits})"
            )
        if problems:
            raise SettingsError("; ".join(problems))


@cache
def _field_types() -> dict[str, type]:
    """Each field's runtime type: ``int``, ``float``, ``bool``, ``str`` or ``tuple`` (of ints)."""
    hints = typing.get_type_hints(PipelineSettings)
    return {name: typing.get_origin(hint) or hint for name, hint in hints.items()}


def _coerce(name: str, kind: type, raw: Any) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise SettingsError(f"{name}: not a boolean: {raw!r}")
    if kind is tuple:
        return tuple(int(value) for value in raw)
    if kind is str:
        # S3 URIs are prefixes: the requests append "/<part>" to them.
        return str(raw).rstrip("/") if name.endswith("_uri") else str(raw)
    return kind(raw)


def param_specs() -> dict[str, dict[str, Any]]:
    """``airflow.sdk.Param`` keyword arguments for each field, in form order (by section)."""
    types = _field_types()
    declared = sorted(fields(PipelineSettings), key=lambda item: SECTIONS.index(item.metadata["section"]))
    return {
        item.name: {
            "default": list(item.default) if isinstance(item.default, tuple) else item.default,
            "description": item.metadata["description"],
            "section": item.metadata["section"],
            "type": _JSON_TYPES[types[item.name]],
            "$schema": SCHEMA_DIALECT,
            **item.metadata["schema"],
        }
        for item in declared
    }


PARAM_SPECS: dict[str, dict[str, Any]] = param_specs()
