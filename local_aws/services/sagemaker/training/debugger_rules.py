"""SageMaker Debugger rule statuses for local training jobs, honestly reported.

AWS evaluates Debugger rules in separate processing jobs on tensors saved by the
smdebug hook. local_aws has no such tensors; what it has is every metric scraped
from the job's logs. So it evaluates the rules whose meaning survives on an
epoch-level metric series, as a *local approximation*:

* ``LossNotDecreasing``: over the last ``num_steps`` (default 10) scraped training-loss
  values, the loss never fell by ``diff_percent`` (default 0.1) % below the first one.
* ``Overfit``: for ``patience`` (default 1) consecutive points the validation loss rose
  while the training loss fell.
* ``Overtraining``: the training loss did not improve by more than ``delta`` (default
  0.01) for ``patience_train`` (default 5) points, or the validation loss for
  ``patience_validation`` (default 10) points.

Training loss is the first metric whose name matches ``train...loss``; validation loss
the first matching ``valid|val|eval...loss``.

The ProfilerReport rule and the profiler rules of :mod:`.profiler_rules` stay ``InProgress``
when the job ends: :mod:`.profiler` evaluates them on the job's system metrics once its
instances have stopped (on AWS too a rule's processing job outlives the training job). Every
other rule (tensor rules, custom rule images) is reported as ``Stopped`` with StatusDetails
saying local_aws does not evaluate it: never as ``NoIssuesFound``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
from collections.abc import Callable
from typing import Any

from local_aws.services.base import now
from local_aws.services.sagemaker.training import profiler_rules

Series = list[float]
History = dict[str, list[tuple[dt.datetime, float]]]
Evaluation = tuple[str, str]  # (RuleEvaluationStatus, StatusDetails)

RULE_KINDS = ("DebugRuleConfigurations", "ProfilerRuleConfigurations")
TRAIN_LOSS = re.compile(r"train.*loss", re.IGNORECASE)
VALID_LOSS = re.compile(r"(valid|val|eval).*loss", re.IGNORECASE)
APPROXIMATION = "local_aws metric-based approximation"


def rule_name(configuration: dict[str, Any]) -> str:
    return str(
        configuration.get("RuleParameters", {}).get("rule_to_invoke")
        or configuration["RuleConfigurationName"]
    )


def _evaluation_job_arn(job_arn: str, configuration_name: str) -> str:
    digest = hashlib.sha256(f"{job_arn}/{configuration_name}".encode()).hexdigest()[:8]
    prefix, _, resource = job_arn.rpartition(":")
    job = resource.rsplit("/", 1)[-1][:26]
    return f"{prefix}:processing-job/{job}-{configuration_name[:20].lower()}-{digest}"


def rule_status(
    job_arn: str, configuration: dict[str, Any], status: str, details: str | None = None
) -> dict[str, Any]:
    """One entry of Debug/ProfilerRuleEvaluationStatuses."""
    entry = {
        "RuleConfigurationName": configuration["RuleConfigurationName"],
        "RuleEvaluationJobArn": _evaluation_job_arn(job_arn, configuration["RuleConfigurationName"]),
        "RuleEvaluationStatus": status,
        "LastModifiedTime": now(),
    }
    if details:
        entry["StatusDetails"] = details
    return entry


def initial_statuses(request: dict[str, Any], job_arn: str) -> dict[str, list[dict[str, Any]]]:
    return {
        kind: [rule_status(job_arn, configuration, "InProgress") for configuration in request[kind]]
        for kind in RULE_KINDS
        if request.get(kind)
    }


def final_statuses(
    request: dict[str, Any], history: History, job_arn: str
) -> dict[str, list[dict[str, Any]]]:
    statuses: dict[str, list[dict[str, Any]]] = {}
    for kind in RULE_KINDS:
        for configuration in request.get(kind) or []:
            if kind == "ProfilerRuleConfigurations" and evaluated_on_the_profile(configuration):
                status, details = "InProgress", None
            else:
                status, details = evaluate(configuration, history)
            statuses.setdefault(kind, []).append(rule_status(job_arn, configuration, status, details))
    return statuses


def evaluated_on_the_profile(configuration: dict[str, Any]) -> bool:
    """Whether :mod:`.profiler` evaluates this profiler rule after the job."""
    name = rule_name(configuration)
    return name == profiler_rules.PROFILER_REPORT or name in profiler_rules.RULES


def evaluate(configuration: dict[str, Any], history: History) -> Evaluation:
    name = rule_name(configuration)
    evaluator = EVALUATORS.get(name)
    if evaluator is None:
        return (
            "Stopped",
            f"local_aws does not evaluate the {name} rule (it needs smdebug tensors or profiler data).",
        )
    parameters = configuration.get("RuleParameters", {})
    return evaluator(parameters, _series(history, TRAIN_LOSS), _series(history, VALID_LOSS))


def metric_points(
    history: History, pattern: re.Pattern[str]
) -> tuple[str, list[tuple[dt.datetime, float]]] | None:
    """The first metric (by name) matching ``pattern``, with its scraped (time, value) points."""
    for metric in sorted(history):
        if pattern.search(metric):
            return metric, history[metric]
    return None


def _series(history: History, pattern: re.Pattern[str]) -> tuple[str, Series] | None:
    found = metric_points(history, pattern)
    return (found[0], [value for _, value in found[1]]) if found else None


def _missing(rule: str, what: str) -> Evaluation:
    return (
        "Stopped",
        f"local_aws could not evaluate {rule}: no {what} metric was scraped from the job's logs.",
    )


def _loss_not_decreasing(parameters: dict[str, str], train: tuple[str, Series] | None, _: Any) -> Evaluation:
    if train is None:
        return _missing("LossNotDecreasing", "training loss")
    metric, values = train
    num_steps = int(parameters.get("num_steps", 10))
    diff_percent = float(parameters.get("diff_percent", 0.1))
    window = values[-num_steps:]
    if len(window) < 2:
        return "Stopped", f"local_aws could not evaluate LossNotDecreasing: {metric} has fewer than 2 values."
    threshold = window[0] * (1 - diff_percent / 100)
    if min(window[1:]) > threshold:
        return (
            "IssuesFound",
            f"{APPROXIMATION}: {metric} did not decrease over its last {len(window)} values.",
        )
    return "NoIssuesFound", f"{APPROXIMATION}: {metric} decreased over its last {len(window)} values."


def _overfit(
    parameters: dict[str, str], train: tuple[str, Series] | None, valid: tuple[str, Series] | None
) -> Evaluation:
    if train is None or valid is None:
        return _missing("Overfit", "training loss" if train is None else "validation loss")
    patience = int(parameters.get("patience", 1))
    pairs = list(zip(train[1], valid[1], strict=False))
    if len(pairs) < 2:
        return "Stopped", "local_aws could not evaluate Overfit: fewer than 2 paired loss values."
    streak = 0
    for (train_before, valid_before), (train_after, valid_after) in itertools.pairwise(pairs):
        streak = streak + 1 if train_after < train_before and valid_after > valid_before else 0
        if streak >= patience:
            return "IssuesFound", (
                f"{APPROXIMATION}: {valid[0]} rose while {train[0]} fell for {streak} consecutive values."
            )
    return (
        "NoIssuesFound",
        f"{APPROXIMATION}: {valid[0]} never rose while {train[0]} fell ({len(pairs)} values).",
    )


def _stalled_for(values: Series, delta: float) -> int:
    """How many trailing values did not improve on the best before them by more than ``delta``."""
    best, stalled = values[0], 0
    for value in values[1:]:
        if value < best - delta:
            best, stalled = value, 0
        else:
            stalled += 1
    return stalled


def _overtraining(
    parameters: dict[str, str], train: tuple[str, Series] | None, valid: tuple[str, Series] | None
) -> Evaluation:
    if train is None:
        return _missing("Overtraining", "training loss")
    delta = float(parameters.get("delta", 0.01))
    checks = [(train, int(parameters.get("patience_train", 5)))]
    if valid is not None:
        checks.append((valid, int(parameters.get("patience_validation", 10))))
    for (metric, values), patience in checks:
        if values and _stalled_for(values, delta) >= patience:
            return (
                "IssuesFound",
                f"{APPROXIMATION}: {metric} has not improved by {delta} for {patience} values.",
            )
    return "NoIssuesFound", f"{APPROXIMATION}: losses kept improving within their patience."


EVALUATORS: dict[str, Callable[..., Evaluation]] = {
    "LossNotDecreasing": _loss_not_decreasing,
    "Overfit": _overfit,
    "Overtraining": _overtraining,
}
