"""The CreateHyperParameterTuningJob rules beyond the model's, which local_aws runs by."""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution

from local_aws.protocol.api import service_model
from local_aws.protocol.errors import validation_error
from local_aws.protocol.validation import require_valid
from local_aws.services.sagemaker.api import SAGEMAKER
from local_aws.services.sagemaker.training.requests import checked_training_request
from local_aws.services.sagemaker.tuning.runner import trial_request
from local_aws.services.sagemaker.tuning.search import grid, search_space, tuned_value


def training_definition(request: dict[str, Any]) -> dict[str, Any]:
    definitions = request.get("TrainingJobDefinitions")
    if request.get("TrainingJobDefinition") and definitions:
        raise validation_error("Specify either TrainingJobDefinition or TrainingJobDefinitions, not both.")
    if definitions:
        if len(definitions) > 1:
            raise validation_error("local_aws supports one training job definition per tuning job.")
        return definitions[0]
    if not request.get("TrainingJobDefinition"):
        raise validation_error("TrainingJobDefinition is required.")
    return request["TrainingJobDefinition"]


def objective_of(config: dict[str, Any], definition: dict[str, Any]) -> dict[str, str]:
    objective = config.get("HyperParameterTuningJobObjective") or definition.get("TuningObjective")
    if not objective:  # the model makes it optional in both places, but one is needed
        raise validation_error(
            "HyperParameterTuningJobObjective (or the definition's TuningObjective) is required."
        )
    metric_names = {m["Name"] for m in definition["AlgorithmSpecification"].get("MetricDefinitions", [])}
    if objective["MetricName"] not in metric_names:
        raise validation_error(
            f"The objective metric {objective['MetricName']!r} is not among the MetricDefinitions "
            f"{sorted(metric_names)}."
        )
    return objective


def limits_of(config: dict[str, Any], space: dict[str, BaseDistribution]) -> tuple[int, int]:
    limits = config["ResourceLimits"]
    max_jobs = limits.get("MaxNumberOfTrainingJobs")
    if config["Strategy"] == "Grid":
        combinations = math.prod(len(values) for values in grid(space).values())
        max_jobs = min(max_jobs or combinations, combinations)
    if max_jobs is None:
        raise validation_error(
            "ResourceLimits.MaxNumberOfTrainingJobs is required unless the strategy is Grid."
        )
    return max_jobs, limits["MaxParallelTrainingJobs"]


def checked_tuning_request(request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict, int, int]:
    """The rules beyond the model's: (definition, objective, search space, max jobs, max parallel)."""
    config = request["HyperParameterTuningJobConfig"]
    strategy = config["Strategy"]
    early_stopping = config.get("TrainingJobEarlyStoppingType", "Off")
    if strategy == "Hyperband" and early_stopping == "Auto":
        raise validation_error(
            "Hyperband has its own early stopping: TrainingJobEarlyStoppingType must be Off."
        )
    if "WarmStartConfig" in request:
        raise validation_error("local_aws does not support WarmStartConfig.")
    definition = training_definition(request)
    objective = objective_of(config, definition)
    ranges = config.get("ParameterRanges") or definition.get("HyperParameterRanges") or {}
    space = search_space(ranges, strategy)
    static = definition.get("StaticHyperParameters", {})
    if clash := sorted(set(space) & set(static)):
        raise validation_error(f"Hyperparameters {clash} are both static and tuned.")
    max_jobs, max_parallel = limits_of(config, space)
    # The trials are CreateTrainingJob requests: a bad definition is this request's error, now.
    probe = {name: tuned_value(d.choices[0] if isinstance(d, CategoricalDistribution) else d.low)
             for name, d in space.items()}  # fmt: skip
    trial = trial_request(definition, "probe-000-00000000", probe)
    require_valid(service_model(SAGEMAKER.name).operation_model("CreateTrainingJob").input_shape, trial)
    checked_training_request(trial)
    return definition, objective, space, max_jobs, max_parallel
