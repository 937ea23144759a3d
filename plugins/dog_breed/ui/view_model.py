"""What the model page shows, computed from AWS answers and Airflow's run records.

Pure functions: every input is a Describe*/List* response (botocore's shapes, as AWS and
local_aws return them) or a ``RunRecord`` read from Airflow's metadata, so each section is
tested on recorded responses without Airflow or AWS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from dog_breed import gate, metrics
from dog_breed.specs import PROFILER_RULE

# The tasks whose state and return value make a run's row.
TRAIN_TASK, GATE_TASK, DEPLOY_TASK, SMOKE_TEST_TASK = "train", "quality_gate", "deploy_endpoint", "smoke_test"
REVIEW_TASK = "review"  # a person's approval (Airflow HITL); parked in AWAITING_INPUT while it waits
RUN_TASKS = (TRAIN_TASK, GATE_TASK, REVIEW_TASK, DEPLOY_TASK, SMOKE_TEST_TASK)
AWAITING_INPUT = "awaiting_input"
PROFILER_REPORT_FILE = "profiler-output/profiler-report.html"
_EPOCH = re.compile(r"\bepoch=(\d+)\b")
_PACKAGE_VERSION = re.compile(r":model-package/(?P<group>[^/]+)/(?P<version>\d+)$")


# -- inputs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord:
    """One DAG run as Airflow's metadata has it: states and return values of ``RUN_TASKS``."""

    run_id: str
    run_type: str
    state: str
    run_after: datetime
    start_date: datetime | None = None
    conf: Mapping[str, Any] = field(default_factory=dict)
    task_states: Mapping[str, str | None] = field(default_factory=dict)
    returns: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointRecords:
    """What AWS says about one endpoint and what is behind it (None: absent or not readable)."""

    endpoint: Mapping[str, Any] | None = None
    endpoint_config: Mapping[str, Any] | None = None
    endpoint_tags: Mapping[str, str] = field(default_factory=dict)
    endpoint_config_tags: Mapping[str, str] = field(default_factory=dict)
    model: Mapping[str, Any] | None = None
    training_job: Mapping[str, Any] | None = None
    scalable_targets: Sequence[Mapping[str, Any]] = ()
    scaling_policies: Sequence[Mapping[str, Any]] = ()
    model_package: Mapping[str, Any] | None = None


# -- outputs --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScalingView:
    min_capacity: int
    max_capacity: int
    target_invocations_per_instance: float | None
    policy_name: str | None


@dataclass(frozen=True)
class ModelPackageView:
    arn: str
    group: str | None
    version: int | None
    approval_status: str | None


@dataclass(frozen=True)
class EndpointView:
    name: str
    exists: bool
    status: str | None = None
    failure_reason: str | None = None
    endpoint_config: str | None = None
    variant: str | None = None
    instance_type: str | None = None
    current_instance_count: int | None = None
    desired_instance_count: int | None = None
    scaling: ScalingView | None = None
    model_name: str | None = None
    model_data_url: str | None = None
    training_job: str | None = None
    test_accuracy: float | None = None
    deployed_by_run: str | None = None
    model_package: ModelPackageView | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class VariantTraffic:
    variant: str
    current_weight: float | None
    desired_weight: float | None
    share: float | None
    statuses: list[str]
    fleet: str = "live"  # "live": the config the endpoint serves; "new": the one being rolled out
    endpoint_config: str | None = None
    messages: list[str] = field(default_factory=list)  # VariantStatus messages (the rollout's phase)


@dataclass(frozen=True)
class CanaryView:
    """Blue/green deployment state; ``active`` False (nothing to show) until one has happened."""

    active: bool
    in_progress: bool = False
    endpoint_config: str | None = None
    routing: str | None = None
    traffic: list[VariantTraffic] = field(default_factory=list)
    auto_rollback_alarms: list[str] = field(default_factory=list)
    failure_reason: str | None = None  # why the last update ended on the old config (a rollback)


@dataclass(frozen=True)
class RunView:
    run_id: str
    run_type: str
    state: str
    started: str
    test_accuracy: float | None
    gate: str  # "deploy", "hold" (the gate skipped the deploy), "not reached"
    gate_reason: str | None
    threshold: float | None
    deployed: bool
    smoke_test: str | None
    training_job: str | None
    live: bool
    review_url: str | None = None  # set while the run waits for a person: Airflow's review form


@dataclass(frozen=True)
class TrainingCurves:
    training_job: str | None
    epochs: list[int]
    series: dict[str, list[float | None]]
    final_metrics: dict[str, float]
    source: str


@dataclass(frozen=True)
class ProfilerReportView:
    training_job: str | None
    rule: str | None = None
    rule_status: str | None = None
    status_details: str | None = None
    report_uri: str | None = None
    available: bool = False


@dataclass(frozen=True)
class PredictionView:
    image: str
    s3_uri: str
    expected: str
    predicted: str
    probability: float
    latency_ms: float
    correct: bool
    thumbnail: str


@dataclass(frozen=True)
class SmokeTestView:
    run_id: str
    runtime: str | None
    images: int
    latency_ms_p50: float
    latency_ms_max: float
    top1_accuracy: float
    predictions: list[PredictionView]


@dataclass(frozen=True)
class ModelPage:
    dag_id: str
    endpoint_name: str
    endpoint_choices: list[str]
    region: str
    endpoint_url: str | None  # the connection's SageMaker endpoint_url: set offline (local_aws)
    endpoint: EndpointView
    canary: CanaryView
    runs: list[RunView]
    curves: TrainingCurves
    profiler: ProfilerReportView
    smoke_test: SmokeTestView | None
    problems: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the live endpoint ----------------------------------------------------------------------
def endpoint_view(name: str, records: EndpointRecords) -> EndpointView:
    """Status, config, instances now and their scaling range, the model and where it came from."""
    endpoint = records.endpoint
    if endpoint is None:
        return EndpointView(name=name, exists=False)
    variants = endpoint.get("ProductionVariants") or [{}]
    live_variant = variants[0]
    config_variant = _first((records.endpoint_config or {}).get("ProductionVariants") or [])
    tags = {**records.endpoint_config_tags, **records.endpoint_tags}  # the endpoint's own tags win
    model = records.model or {}
    container = model.get("PrimaryContainer") or _first(model.get("Containers") or []) or {}
    return EndpointView(
        name=name,
        exists=True,
        status=endpoint.get("EndpointStatus"),
        failure_reason=endpoint.get("FailureReason"),
        endpoint_config=endpoint.get("EndpointConfigName"),
        variant=live_variant.get("VariantName"),
        instance_type=live_variant.get("CurrentInstanceType") or config_variant.get("InstanceType"),
        current_instance_count=live_variant.get("CurrentInstanceCount"),
        desired_instance_count=live_variant.get("DesiredInstanceCount"),
        scaling=scaling_view(records.scalable_targets, records.scaling_policies),
        model_name=config_variant.get("ModelName") or tags.get(gate.TAG_MODEL_NAME),
        model_data_url=container.get("ModelDataUrl"),
        training_job=tags.get(gate.TAG_TRAINING_JOB),
        test_accuracy=gate.champion_accuracy(tags),
        deployed_by_run=tags.get(gate.TAG_DAG_RUN),
        model_package=model_package_view(tags.get(gate.TAG_MODEL_PACKAGE_ARN), records.model_package),
        last_modified=_iso(endpoint.get("LastModifiedTime")),
    )


def scaling_view(
    targets: Sequence[Mapping[str, Any]], policies: Sequence[Mapping[str, Any]]
) -> ScalingView | None:
    """DescribeScalableTargets + DescribeScalingPolicies of one variant; None when not registered."""
    if not targets:
        return None
    target = targets[0]
    policy = _first([p for p in policies if p.get("PolicyType") == "TargetTrackingScaling"])
    tracking = policy.get("TargetTrackingScalingPolicyConfiguration") or {}
    return ScalingView(
        min_capacity=int(target["MinCapacity"]),
        max_capacity=int(target["MaxCapacity"]),
        target_invocations_per_instance=tracking.get("TargetValue"),
        policy_name=policy.get("PolicyName"),
    )


def model_package_view(arn: str | None, package: Mapping[str, Any] | None) -> ModelPackageView | None:
    """The registry version behind the model: from its ARN (``.../<group>/<version>``) and, when
    readable, DescribeModelPackage."""
    if not arn:
        return None
    found = _PACKAGE_VERSION.search(arn)
    package = package or {}
    version = package.get("ModelPackageVersion") or (int(found["version"]) if found else None)
    return ModelPackageView(
        arn=arn,
        group=package.get("ModelPackageGroupName") or (found["group"] if found else None),
        version=version,
        approval_status=package.get("ModelApprovalStatus"),
    )


def canary_view(endpoint: Mapping[str, Any] | None) -> CanaryView:
    """Traffic shares of a blue/green update: while one runs (``PendingDeploymentSummary``), the
    live fleet's variants and the new fleet's, each share its CurrentWeight over the sum of both
    (SageMaker moves weight from the one to the other as traffic shifts); after it, the live
    variants and ``LastDeploymentConfig``'s routing and alarms. Nothing until the first one."""
    endpoint = endpoint or {}
    pending = endpoint.get("PendingDeploymentSummary")
    deployment = endpoint.get("LastDeploymentConfig")
    if not pending and not deployment:
        return CanaryView(active=False)
    fleets = [("live", endpoint.get("EndpointConfigName"), endpoint.get("ProductionVariants") or [])]
    if pending:
        fleets.append(("new", pending.get("EndpointConfigName"), pending.get("ProductionVariants") or []))
    weights = [v.get("CurrentWeight") for _, _, variants in fleets for v in variants]
    total = sum(w for w in weights if w is not None)
    traffic = [
        VariantTraffic(
            variant=v.get("VariantName", "?"),
            current_weight=v.get("CurrentWeight"),
            desired_weight=v.get("DesiredWeight"),
            share=(v["CurrentWeight"] / total) if total and v.get("CurrentWeight") is not None else None,
            statuses=[s.get("Status", "?") for s in v.get("VariantStatus") or []],
            fleet=fleet,
            endpoint_config=config,
            messages=[s["StatusMessage"] for s in v.get("VariantStatus") or [] if s.get("StatusMessage")],
        )
        for fleet, config, variants in fleets
        for v in variants
    ]
    policy = ((deployment or {}).get("BlueGreenUpdatePolicy") or {}).get("TrafficRoutingConfiguration")
    alarms = ((deployment or {}).get("AutoRollbackConfiguration") or {}).get("Alarms") or []
    return CanaryView(
        active=True,
        in_progress=bool(pending),
        endpoint_config=(pending or {}).get("EndpointConfigName"),
        routing=routing_summary(policy) if policy else None,
        traffic=traffic,
        auto_rollback_alarms=[a.get("AlarmName", "?") for a in alarms],
        failure_reason=endpoint.get("FailureReason") if deployment and not pending else None,
    )


def routing_summary(routing: Mapping[str, Any]) -> str:
    """``CANARY 10% then wait 300 s`` from a TrafficRoutingConfiguration."""
    kind = routing.get("Type", "?")
    step = routing.get("CanarySize") or routing.get("LinearStepSize")
    size = ""
    if step:
        unit = "%" if step.get("Type") == "CAPACITY_PERCENT" else " instance(s)"
        size = f" {step.get('Value')}{unit}"
    wait = routing.get("WaitIntervalInSeconds")
    return f"{kind}{size}" + (f", wait {wait} s between steps" if wait is not None else "")


# -- the runs -------------------------------------------------------------------------------
def run_views(
    records: Iterable[RunRecord],
    live_run_id: str | None = None,
    review_url: Callable[[str], str] | None = None,
) -> list[RunView]:
    """One row per run, newest first: test accuracy, the gate's decision, whether it deployed,
    and, while it waits for a person, where to review it (``review_url(run_id)``)."""
    views = [run_view(record, live_run_id, review_url) for record in records]
    return sorted(views, key=lambda v: v.started, reverse=True)


def run_view(
    record: RunRecord, live_run_id: str | None = None, review_url: Callable[[str], str] | None = None
) -> RunView:
    training = (record.returns.get(TRAIN_TASK) or {}).get("Training") or {}
    decision = record.returns.get(GATE_TASK) or {}
    gate_state = record.task_states.get(GATE_TASK)
    if gate_state == "success" and decision.get("deploy"):
        verdict = "deploy"
    elif gate_state == "skipped" and record.task_states.get(TRAIN_TASK) == "success":
        verdict = "hold"  # a run stopped by hand skips its unfinished tasks too: that is no verdict
    else:
        verdict = "not reached"
    return RunView(
        run_id=record.run_id,
        run_type=record.run_type,
        state=record.state,
        started=(record.start_date or record.run_after).isoformat(),
        test_accuracy=_final_metric(training),
        gate=verdict,
        gate_reason=decision.get("reason"),
        threshold=decision.get("threshold", _float_or_none(record.conf.get("accuracy_threshold"))),
        deployed=record.task_states.get(DEPLOY_TASK) == "success",
        smoke_test=record.task_states.get(SMOKE_TEST_TASK),
        training_job=training.get("TrainingJobName"),
        live=live_run_id is not None and record.run_id == live_run_id,
        review_url=(
            review_url(record.run_id)
            if review_url and record.task_states.get(REVIEW_TASK) == AWAITING_INPUT
            else None
        ),
    )


def latest_training_job(runs: Sequence[RunView]) -> str | None:
    """The newest run's training job (``runs`` newest first)."""
    return next((run.training_job for run in runs if run.training_job), None)


# -- training curves ------------------------------------------------------------------------
def training_curves(
    training_job: str | None,
    log_lines: Iterable[str],
    description: Mapping[str, Any] | None = None,
    source: str = "",
) -> TrainingCurves:
    """Per-epoch series from the job's log lines, scraped with the regexes SageMaker uses
    (``dog_breed.metrics``), keyed by SageMaker metric name (``train:loss``...)."""
    by_epoch: dict[int, dict[str, float]] = {}
    for line in log_lines:
        if metrics.METRIC_LINE_PREFIX not in line:
            continue
        epoch = _EPOCH.search(line)
        if epoch is None:
            continue
        values = by_epoch.setdefault(int(epoch.group(1)), {})
        for definition in metrics.METRIC_DEFINITIONS:
            found = re.search(definition["Regex"], line)
            if found:
                values[definition["Name"]] = float(found.group(1))
    epochs = sorted(by_epoch)
    names = sorted({name for values in by_epoch.values() for name in values})
    final = {
        item["MetricName"]: float(item["Value"])
        for item in (description or {}).get("FinalMetricDataList") or []
        if "MetricName" in item and "Value" in item
    }
    return TrainingCurves(
        training_job=training_job,
        epochs=epochs,
        series={name: [by_epoch[e].get(name) for e in epochs] for name in names},
        final_metrics=final,
        source=source,
    )


# -- the profiler report --------------------------------------------------------------------
def profiler_report_location(training: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """S3 URI of the ProfilerReport rule's HTML report, and the rule's evaluation status.

    Debugger writes a rule's output under the rule's ``S3OutputPath``; when the request sets
    none, under ``<ProfilerConfig.S3OutputPath>/<job>/rule-output``; the ProfilerReport rule
    puts its report at ``<that>/<RuleConfigurationName>/profiler-output/profiler-report.html``.
    """
    configurations = training.get("ProfilerRuleConfigurations") or []
    rule = _first([c for c in configurations if _rule_name(c) == PROFILER_RULE])
    if not rule:
        return None
    statuses = training.get("ProfilerRuleEvaluationStatuses") or []
    status = _first(
        [s for s in statuses if s.get("RuleConfigurationName") == rule.get("RuleConfigurationName")]
    )
    base = rule.get("S3OutputPath")
    if not base:
        profiler_path = (training.get("ProfilerConfig") or {}).get("S3OutputPath")
        if not profiler_path:
            return None
        base = f"{profiler_path.rstrip('/')}/{training['TrainingJobName']}/rule-output"
    return f"{base.rstrip('/')}/{rule['RuleConfigurationName']}/{PROFILER_REPORT_FILE}", status


def profiler_view(
    training_job: str | None, training: Mapping[str, Any] | None, report_exists: bool
) -> ProfilerReportView:
    located = profiler_report_location(training) if training else None
    if located is None:
        return ProfilerReportView(training_job=training_job)
    uri, status = located
    return ProfilerReportView(
        training_job=training_job,
        rule=status.get("RuleConfigurationName") or PROFILER_RULE,
        rule_status=status.get("RuleEvaluationStatus"),
        status_details=status.get("StatusDetails"),
        report_uri=uri,
        available=report_exists,
    )


# -- the smoke test -------------------------------------------------------------------------
def dataset_image_uri(dataset_s3_uri: str, expected_class_folder: str, image: str) -> str:
    """Where the smoke test read an image: ``<dataset>/test/<class folder>/<file>`` (dogImages)."""
    return f"{dataset_s3_uri.rstrip('/')}/test/{expected_class_folder}/{image}"


def smoke_test_view(
    records: Iterable[RunRecord],
    default_dataset_uri: str,
    thumbnail_url: Callable[[str, int], str],
) -> SmokeTestView | None:
    """The newest run's smoke-test report, each prediction with its image's thumbnail URL."""
    with_report = [r for r in records if isinstance(r.returns.get(SMOKE_TEST_TASK), Mapping)]
    if not with_report:
        return None
    record = max(with_report, key=lambda r: r.start_date or r.run_after)
    report = record.returns[SMOKE_TEST_TASK]
    dataset = str(record.conf.get("dataset_s3_uri") or default_dataset_uri)
    predictions = [
        PredictionView(
            image=p["image"],
            s3_uri=dataset_image_uri(dataset, p["expected"], p["image"]),
            expected=p["expected"],
            predicted=p["predicted"],
            probability=float(p["probability"]),
            latency_ms=float(p["latency_ms"]),
            correct=p["expected"] == p["predicted"],
            thumbnail=thumbnail_url(record.run_id, index),
        )
        for index, p in enumerate(report.get("predictions") or [])
    ]
    return SmokeTestView(
        run_id=record.run_id,
        runtime=report.get("runtime"),
        images=int(report.get("images", len(predictions))),
        latency_ms_p50=float(report.get("latency_ms_p50", 0.0)),
        latency_ms_max=float(report.get("latency_ms_max", 0.0)),
        top1_accuracy=float(report.get("top1_accuracy", 0.0)),
        predictions=predictions,
    )


def smoke_test_image(record: RunRecord, index: int, default_dataset_uri: str) -> str | None:
    """S3 URI of prediction ``index`` of a run's smoke test; None when there is no such one."""
    report = record.returns.get(SMOKE_TEST_TASK)
    predictions = report.get("predictions") if isinstance(report, Mapping) else None
    if not predictions or not 0 <= index < len(predictions):
        return None
    prediction = predictions[index]
    dataset = str(record.conf.get("dataset_s3_uri") or default_dataset_uri)
    return dataset_image_uri(dataset, prediction["expected"], prediction["image"])


# -- helpers --------------------------------------------------------------------------------
def _first(items: Sequence[Any]) -> Any:
    return items[0] if items else {}


def _rule_name(configuration: Mapping[str, Any]) -> str:
    parameters = configuration.get("RuleParameters") or {}
    return str(parameters.get("rule_to_invoke") or configuration.get("RuleConfigurationName"))


def _final_metric(training: Mapping[str, Any]) -> float | None:
    try:
        return gate.final_metric(training)
    except ValueError:
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (str(value) if value else None)
