"""Debugger's built-in profiler rules, evaluated on what local_aws records of a training job.

Pure functions over the job's system metrics (the records :mod:`.system_monitor` wrote, read
back by :func:`parse_system_metrics`) and its :class:`JobTimeline` (epoch ends from the
training-loss metric the MetricDefinitions scraped, seconds per phase from the ``[timing]``
lines). The rules are AWS's (smdebug's ``profiler/analysis/rules``), with AWS's parameter names
and defaults, which a ``ProfilerReport`` configuration overrides as ``<Rule>_<parameter>``
(``"StepOutlier_n_outliers": "0"``) and a single rule's configuration as ``<parameter>``.
Evaluated once, when the job has ended, so a "window" is the last ``window`` datapoints.

What the data here supports:

* **OverallSystemUsage**: percentiles of CPU (mean over cores), memory and disk throughput per
  instance; informational, never triggers (as AWS's).
* **BatchSize**: AWS flags a GPU whose utilization and memory are low while the CPU is idle too.
  Without a GPU the CPU is the compute device: the rule triggers when both the CPU's and the
  memory's p95 over the last ``window`` datapoints are below ``cpu_threshold_p95`` and
  ``memory_threshold_p95`` (a larger batch, or a smaller instance, would do).
* **StepOutlier**: on epoch durations (train.py logs no step timings): an epoch is an outlier
  when it exceeds the mean of the *other* epochs by ``stddev`` standard deviations (AWS compares
  against the mean of all steps, which no value among a handful can exceed by 3 sigma); the rule
  triggers on more than ``n_outliers`` outliers.
* **MaxInitializationTime**: the ``start`` and ``data`` phases (everything before the first
  epoch) against ``threshold`` minutes.

Not applicable: CPUBottleneck, IOBottleneck, LowGPUUtilization, GPUMemoryIncrease and
LoadBalancing judge GPUs, and local_aws trains on CPUs; Dataloader and OverallFrameworkMetrics
read framework metrics, which Debugger no longer collects from PyTorch 2.0 on and local_aws
never did. They are listed with AWS's thresholds and say why they do not apply.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from local_aws.services.sagemaker.training.system_monitor import (
    CPU_UTILIZATION,
    MEMORY_USED,
    READ_THROUGHPUT,
    WRITE_THROUGHPUT,
)

Verdict = Literal["issue", "ok", "not enough data", "not applicable"]
PROFILER_REPORT = "ProfilerReport"
# RuleParameters a ProfilerReport configuration carries that are no rule's threshold.
REPORT_KEYS = frozenset({"rule_to_invoke", "opt_out_telemetry", "custom_rule_parameters"})
NO_GPU = "the instance has no GPU (local_aws trains on CPU, SM_NUM_GPUS=0), and this rule judges GPUs"
NO_FRAMEWORK_METRICS = (
    "it reads framework metrics, which Debugger no longer collects from PyTorch 2.0 on "
    "and local_aws never did"
)


class RuleParameterError(ValueError):
    """A rule parameter that is unknown or not a number."""


# -- the data ---------------------------------------------------------------------------------
@dataclass
class Series:
    timestamps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, timestamp: float, value: float) -> None:
        self.timestamps.append(timestamp)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class HostMetrics:
    """One instance's system metrics, per metric in time order."""

    cores: dict[str, Series] = field(default_factory=dict)  # cpu0, cpu1, ...: CPUUtilization
    memory: Series = field(default_factory=Series)
    read: Series = field(default_factory=Series)  # bytes per second
    write: Series = field(default_factory=Series)

    def cpu_total(self) -> Series:
        """The mean over cores of each sample (a sample's records share its timestamp)."""
        by_time: dict[float, list[float]] = defaultdict(list)
        for series in self.cores.values():
            for timestamp, value in zip(series.timestamps, series.values, strict=True):
                by_time[timestamp].append(value)
        cores = max(1, len(self.cores))
        total = Series()
        for timestamp in sorted(by_time):
            total.add(timestamp, sum(by_time[timestamp]) / cores)
        return total

    @property
    def datapoints(self) -> int:
        return len(self.memory)


def parse_system_metrics(lines: Iterable[str]) -> dict[str, HostMetrics]:
    """Debugger system-metric JSON lines -> metrics per host (NodeId), each series sorted by time.
    Lines that are not such records (and metrics local_aws does not chart) are skipped."""
    hosts: dict[str, HostMetrics] = {}
    for line in lines:
        try:
            record = json.loads(line)
            host, name, timestamp, value = (
                record["NodeId"],
                record["Name"],
                record["Timestamp"],
                record["Value"],
            )
            timestamp, value = float(timestamp), float(value)
        except (ValueError, KeyError, TypeError):
            continue
        metrics = hosts.setdefault(str(host), HostMetrics())
        if record.get("Dimension") == CPU_UTILIZATION:
            metrics.cores.setdefault(str(name), Series()).add(timestamp, value)
        elif name == MEMORY_USED:
            metrics.memory.add(timestamp, value)
        elif name == READ_THROUGHPUT:
            metrics.read.add(timestamp, value)
        elif name == WRITE_THROUGHPUT:
            metrics.write.add(timestamp, value)
    for metrics in hosts.values():
        for series in (*metrics.cores.values(), metrics.memory, metrics.read, metrics.write):
            order = sorted(range(len(series)), key=series.timestamps.__getitem__)
            series.timestamps[:] = [series.timestamps[i] for i in order]
            series.values[:] = [series.values[i] for i in order]
    return dict(sorted(hosts.items()))


@dataclass(frozen=True)
class JobTimeline:
    """When the epochs ended and where each instance's time went."""

    epoch_ends: Sequence[float] = ()  # epoch seconds of each training-loss metric line
    first_epoch_start: float | None = None
    phases: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # host -> phase -> seconds

    @classmethod
    def build(
        cls,
        epoch_ends: Sequence[float],
        phases: Mapping[str, Mapping[str, float]],
        instance_started: Mapping[str, float],
        main_host: str = "algo-1",
    ) -> JobTimeline:
        """The first epoch starts when the main host's entry point had started and loaded its
        data (its ``start`` and ``data`` phases), when both are known."""
        main = phases.get(main_host, {})
        started = instance_started.get(main_host)
        first = None
        if started is not None and "start" in main:
            first = started + main["start"] + main.get("data", 0.0)
        return cls(tuple(sorted(epoch_ends)), first, phases)

    def epoch_durations(self) -> list[tuple[int, float]]:
        """(epoch number, seconds); the first epoch only when its start is known."""
        ends = list(self.epoch_ends)
        if not ends:
            return []
        starts: list[float | None] = [self.first_epoch_start, *ends[:-1]]
        return [
            (number, end - start)
            for number, (start, end) in enumerate(zip(starts, ends, strict=True), start=1)
            if start is not None and end >= start
        ]

    def initialization_seconds(self) -> dict[str, float]:
        """Seconds before the first epoch per host: its ``start`` plus ``data`` phases."""
        return {
            host: phases["start"] + phases.get("data", 0.0)
            for host, phases in self.phases.items()
            if "start" in phases
        }


@dataclass(frozen=True)
class ProfileData:
    hosts: Mapping[str, HostMetrics]
    timeline: JobTimeline


# -- findings ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    rule: str
    verdict: Verdict
    summary: str
    parameters: Mapping[str, float]
    details: Mapping[str, Any] = field(default_factory=dict)
    violations: int = 0
    datapoints: int = 0

    @property
    def triggered(self) -> bool:
        return self.verdict == "issue"

    def report(self) -> dict[str, Any]:
        """The rule's JSON as the ProfilerReport rule writes it to ``profiler-reports/<Rule>.json``."""
        return {
            "RuleTriggered": int(self.triggered),
            "Violations": self.violations,
            "Details": dict(self.details),
            "Datapoints": self.datapoints,
            "RuleParameters": "\n".join(
                f"{name}:{format_number(value)}" for name, value in self.parameters.items()
            ),
        }


@dataclass(frozen=True)
class RuleDefinition:
    name: str
    description: str
    defaults: Mapping[str, float]
    check: Callable[[ProfileData, Mapping[str, float]], Finding]


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values, dtype=float)
    quantile = {
        name: float(np.quantile(array, q)) for name, q in (("p99", 0.99), ("p95", 0.95), ("p50", 0.5))
    }
    return {
        "max": round(float(array.max()), 2),
        **{k: round(v, 2) for k, v in quantile.items()},
        "min": round(float(array.min()), 2),
    }


def format_number(value: float) -> str:
    """A parameter as AWS writes it: ``20``, ``0.2``."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _overall_system_usage(data: ProfileData, parameters: Mapping[str, float]) -> Finding:
    rule = "OverallSystemUsage"
    measured = {host: metrics for host, metrics in data.hosts.items() if metrics.datapoints}
    if not measured:
        return Finding(rule, "not enough data", "No system metrics were sampled.", parameters)
    details = {
        "CPU": {host: _stats(m.cpu_total().values) for host, m in measured.items()},
        "CPU memory": {host: _stats(m.memory.values) for host, m in measured.items()},
        "Disk read bytes/s": {host: _stats(m.read.values) for host, m in measured.items()},
        "Disk write bytes/s": {host: _stats(m.write.values) for host, m in measured.items()},
    }
    summary = "; ".join(
        f"{host}: CPU p95 {details['CPU'][host]['p95']}%, memory p95 {details['CPU memory'][host]['p95']}%"
        for host in measured
    )
    points = max(m.datapoints for m in measured.values())
    return Finding(
        rule, "ok", summary + " (informational: this rule never triggers).", parameters, details, 0, points
    )


def _batch_size(data: ProfileData, parameters: Mapping[str, float]) -> Finding:
    rule = "BatchSize"
    window, patience = int(parameters["window"]), int(parameters["patience"])
    cpu_limit, memory_limit = parameters["cpu_threshold_p95"], parameters["memory_threshold_p95"]
    details: dict[str, Any] = {}
    underused: list[str] = []
    points = 0
    for host, metrics in data.hosts.items():
        cpu = metrics.cpu_total().values
        points = max(points, len(cpu))
        if len(cpu) <= max(window, patience) or len(metrics.memory) < window:
            continue
        cpu_p95 = float(np.quantile(cpu[-window:], 0.95))
        memory_p95 = float(np.quantile(metrics.memory.values[-window:], 0.95))
        details[host] = {"cpu": {"p95": round(cpu_p95, 2)}, "memory": {"p95": round(memory_p95, 2)}}
        if cpu_p95 < cpu_limit and memory_p95 < memory_limit:
            underused.append(f"{host} (CPU p95 {cpu_p95:.1f}%, memory p95 {memory_p95:.1f}%)")
    if not details:
        return Finding(
            rule,
            "not enough data",
            f"Needs more than {max(window, patience)} datapoints per instance (patience {patience}, "
            f"window {window}); the job has {points}.",
            parameters,
            datapoints=points,
        )
    if underused:
        return Finding(
            rule,
            "issue",
            f"Underused over the last {window} datapoints: {', '.join(underused)}, below "
            f"{format_number(cpu_limit)}% CPU and {format_number(memory_limit)}% memory: a larger batch size "
            "or a smaller instance would do.",
            parameters,
            details,
            len(underused),
            points,
        )
    return Finding(rule, "ok", "The CPUs or the memory were busy enough.", parameters, details, 0, points)


def _step_outlier(data: ProfileData, parameters: Mapping[str, float]) -> Finding:
    rule = "StepOutlier"
    stddev, allowed = parameters["stddev"], int(parameters["n_outliers"])
    durations = data.timeline.epoch_durations()
    if len(durations) < 3:
        return Finding(
            rule,
            "not enough data",
            f"Needs 3 epoch durations to compare each with the others; the job has {len(durations)}.",
            parameters,
            datapoints=len(durations),
        )
    seconds = [d for _, d in durations]
    outliers = []
    for index, (epoch, duration) in enumerate(durations):
        others = np.asarray(seconds[:index] + seconds[index + 1 :])
        if duration > others.mean() + stddev * others.std():
            outliers.append(epoch)
    details = {
        "step_details": {
            "epochs": {
                "step_stats": {"mean": float(np.mean(seconds)), **_stats(seconds)},
                "number_of_outliers": len(outliers),
                "phase": "epoch",
                "stddev": round(float(np.std(seconds)), 2),
                "step_numbers": outliers,
            }
        }
    }
    verdict: Verdict = "issue" if len(outliers) > allowed else "ok"
    summary = (
        f"{len(outliers)} of {len(seconds)} epochs took more than {format_number(stddev)} standard "
        f"deviations above the others' mean (epochs {outliers or 'none'}); the rule allows {allowed}."
    )
    return Finding(
        rule, verdict, summary, parameters, details, len(outliers) if verdict == "issue" else 0, len(seconds)
    )


def _max_initialization_time(data: ProfileData, parameters: Mapping[str, float]) -> Finding:
    rule = "MaxInitializationTime"
    limit_minutes = parameters["threshold"]
    initialization = data.timeline.initialization_seconds()
    if not initialization:
        return Finding(
            rule,
            "not enough data",
            "No [timing] phase=start line in the job's logs: when the first epoch began is unknown.",
            parameters,
        )
    host, seconds = max(initialization.items(), key=lambda item: item[1])
    details = {"initialization_seconds": {h: round(s, 3) for h, s in initialization.items()}}
    over = seconds > limit_minutes * 60
    summary = (
        f"Initialization (start and data phases) took {seconds:.1f} s on {host}, "
        f"{'more' if over else 'less'} than the threshold of {format_number(limit_minutes)} minutes."
    )
    return Finding(
        rule, "issue" if over else "ok", summary, parameters, details, int(over), len(initialization)
    )


def _inapplicable(name: str, reason: str) -> Callable[[ProfileData, Mapping[str, float]], Finding]:
    def check(_: ProfileData, parameters: Mapping[str, float]) -> Finding:
        return Finding(name, "not applicable", f"Not applicable: {reason}.", parameters, {"reason": reason})

    return check


# In the order AWS's ProfilerReport runs them.
RULES: dict[str, RuleDefinition] = {
    rule.name: rule
    for rule in (
        RuleDefinition(
            "CPUBottleneck",
            "GPU utilization is low while CPU utilization is high.",
            {"threshold": 50, "gpu_threshold": 10, "cpu_threshold": 90, "patience": 1000},
            _inapplicable("CPUBottleneck", NO_GPU),
        ),
        RuleDefinition(
            "IOBottleneck",
            "GPU utilization is low while I/O wait is high.",
            {"threshold": 50, "gpu_threshold": 10, "io_threshold": 50, "patience": 1000},
            _inapplicable("IOBottleneck", NO_GPU),
        ),
        RuleDefinition(
            "LowGPUUtilization",
            "A GPU is underused or its utilization fluctuates.",
            {"threshold_p95": 70, "threshold_p5": 10, "window": 500, "patience": 1000},
            _inapplicable("LowGPUUtilization", NO_GPU),
        ),
        RuleDefinition(
            "StepOutlier",
            "An epoch took far longer than the others.",
            {"stddev": 3, "n_outliers": 10},
            _step_outlier,
        ),
        RuleDefinition(
            "GPUMemoryIncrease",
            "GPU memory use keeps growing.",
            {"increase": 5, "patience": 1000, "window": 10},
            _inapplicable("GPUMemoryIncrease", NO_GPU),
        ),
        RuleDefinition(
            "BatchSize",
            "The compute device and its memory are underused: the batch could be larger.",
            {"cpu_threshold_p95": 70, "memory_threshold_p95": 70, "patience": 1000, "window": 500},
            _batch_size,
        ),
        RuleDefinition(
            "MaxInitializationTime",
            "The training loop starts late.",
            {"threshold": 20},
            _max_initialization_time,
        ),
        RuleDefinition(
            "LoadBalancing",
            "The workload is unevenly spread over GPUs.",
            {"threshold": 0.2, "patience": 1000},
            _inapplicable("LoadBalancing", NO_GPU),
        ),
        RuleDefinition(
            "OverallSystemUsage",
            "Utilization percentiles per instance.",
            {},
            _overall_system_usage,
        ),
        RuleDefinition(
            "Dataloader",
            "Too few or too many data-loader processes for the cores.",
            {"min_threshold": 70, "max_threshold": 200},
            _inapplicable("Dataloader", NO_FRAMEWORK_METRICS),
        ),
        RuleDefinition(
            "OverallFrameworkMetrics",
            "Time spent in forward, backward and data loading.",
            {},
            _inapplicable("OverallFrameworkMetrics", NO_FRAMEWORK_METRICS),
        ),
    )
}


# -- evaluating -------------------------------------------------------------------------------
def rule_parameters(rule: str, given: Mapping[str, str]) -> dict[str, float]:
    """``rule``'s defaults overridden by ``given`` (its own parameter names); RuleParameterError
    for a name the rule does not take or a value that is not a number."""
    definition = RULES[rule]
    parameters = dict(definition.defaults)
    for name, raw in given.items():
        if name not in parameters:
            takes = ", ".join(parameters) or "no parameters"
            raise RuleParameterError(f"{rule} has no parameter {name!r} (it takes {takes}).")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise RuleParameterError(f"{rule} parameter {name} must be a number, not {raw!r}.")
        parameters[name] = value
    return parameters


def evaluate(rule: str, data: ProfileData, given: Mapping[str, str] | None = None) -> Finding:
    return RULES[rule].check(data, rule_parameters(rule, given or {}))


def evaluate_report(data: ProfileData, report_parameters: Mapping[str, str]) -> list[Finding]:
    """Every rule, as the ProfilerReport rule runs them, with its ``<Rule>_<parameter>`` overrides."""
    per_rule: dict[str, dict[str, str]] = {name: {} for name in RULES}
    for key, value in report_parameters.items():
        if key in REPORT_KEYS:
            continue
        rule, _, name = key.partition("_")
        if rule not in RULES or not name:
            raise RuleParameterError(
                f"ProfilerReport parameter {key!r} is not <Rule>_<parameter> for one of its rules "
                f"({', '.join(RULES)})."
            )
        per_rule[rule][name] = value
    parameters = {name: rule_parameters(name, given) for name, given in per_rule.items()}
    return [RULES[name].check(data, parameters[name]) for name in RULES]


def report_summary(findings: Sequence[Finding]) -> tuple[str, str]:
    """The ProfilerReport rule's (RuleEvaluationStatus, StatusDetails) from its rules' findings."""
    by_verdict: dict[str, list[str]] = defaultdict(list)
    for finding in findings:
        by_verdict[finding.verdict].append(finding.rule)
    issues = [f for f in findings if f.triggered]
    parts = []
    if issues:
        parts.append("Issues: " + " ".join(f"{f.rule}: {f.summary}" for f in issues))
    else:
        parts.append(
            f"No issues in the {len(findings) - len(by_verdict['not applicable'])} rules that apply."
        )
    if by_verdict["not enough data"]:
        parts.append(f"Not enough data for {', '.join(by_verdict['not enough data'])}.")
    if by_verdict["not applicable"]:
        inapplicable = ", ".join(by_verdict["not applicable"])
        parts.append(f"Not applicable on a CPU instance without framework metrics: {inapplicable}.")
    return ("IssuesFound" if issues else "NoIssuesFound"), " ".join(parts)
