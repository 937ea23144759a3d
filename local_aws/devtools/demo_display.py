"""What ``make demo`` shows: a progress line per change while the DAG runs, and a few tables at
the end. Pure functions from what the demo read (task states, DescribeHyperParameterTuningJob,
DescribeTrainingJob, the job's log, DescribeEndpoint, the summary) to lines and rich tables, so
they are tested on recorded data without a run; ``DemoProgress`` (in demo.py) does the reading.
"""

from __future__ import annotations

import io
import re
from typing import Any

from local_aws.devtools.terminal import PLAIN_WIDTH
from local_aws.services.sagemaker.training.telemetry import JOB_PHASES

# The states a task instance goes through that are worth a line (None: not scheduled yet).
_QUIET_STATES = {None, "none", "scheduled", "queued"}
_METRICS_LINE = re.compile(r"\[metrics\]\s+(?P<pairs>epoch=\d+\b.*)$")
# Columns of figures, right-aligned.
# The columns of a table of "what: value" rows, shown without a header.
_PAIRS = ("what", "value")
_NUMERIC = {"s", "objective", "probability", "latency ms", "test accuracy", "test loss", "version", "total",
            *JOB_PHASES}  # fmt: skip
_PAIR = re.compile(r"(?P<key>[a-z_]+)=(?P<value>[-+0-9.eE]+)")


# -- progress lines ------------------------------------------------------------------------------
def task_changes(before: dict[str, str | None], after: dict[str, str | None]) -> list[str]:
    """One line per task whose state changed to one worth showing, in ``after``'s order."""
    return [
        f"task {task}: {state}"
        for task, state in after.items()
        if state != before.get(task) and state not in _QUIET_STATES
    ]


def tuning_line(tuning: dict[str, Any], trials: list[dict[str, Any]]) -> str:
    """``tuning <job>: 2 of 4 done, 2 running; best valid:best_accuracy 0.8400 (<trial>)`` from
    DescribeHyperParameterTuningJob and ListTrainingJobsForHyperParameterTuningJob."""
    total = (
        tuning.get("HyperParameterTuningJobConfig", {})
        .get("ResourceLimits", {})
        .get("MaxNumberOfTrainingJobs")
    )
    done = sum(1 for t in trials if t.get("TrainingJobStatus") in {"Completed", "Failed", "Stopped"})
    running = sum(1 for t in trials if t.get("TrainingJobStatus") == "InProgress")
    text = f"tuning {tuning.get('HyperParameterTuningJobName')}: {done} of {total or len(trials)} done"
    if running:
        text += f", {running} running"
    scored = [t for t in trials if t.get("FinalHyperParameterTuningJobObjectiveMetric")]
    if scored:
        maximize = tuning.get("HyperParameterTuningJobConfig", {}).get("HyperParameterTuningJobObjective", {})
        pick = min if maximize.get("Type") == "Minimize" else max
        best = pick(scored, key=lambda t: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
        metric = best["FinalHyperParameterTuningJobObjectiveMetric"]
        text += f"; best {metric['MetricName']} {metric['Value']:.4f} ({best['TrainingJobName']})"
    status = tuning.get("HyperParameterTuningJobStatus")
    return text if status == "InProgress" else f"{text}; {status}"


def parse_epochs(log_text: str) -> list[dict[str, float]]:
    """Each ``[metrics] epoch=N ...`` line of a training job's log as ``{"epoch": N, key: value}``
    (N counts from 1)."""
    epochs = []
    for line in log_text.splitlines():
        found = _METRICS_LINE.search(line)
        if found:
            epochs.append({p["key"]: float(p["value"]) for p in _PAIR.finditer(found["pairs"])})
    return epochs


def training_line(job: dict[str, Any], epochs: list[dict[str, float]]) -> str:
    """``training <job>: Training, epoch 3 of 6, valid accuracy 0.8200, 14.2 images/s`` from
    DescribeTrainingJob and the epochs its log shows so far."""
    total = job.get("HyperParameters", {}).get("epochs")
    status = job.get("TrainingJobStatus")
    secondary = job.get("SecondaryStatus")
    text = f"training {job.get('TrainingJobName')}: {secondary or status}"
    if epochs:
        last = epochs[-1]
        text += f", epoch {int(last['epoch'])} of {total or '?'} done"  # train.py counts from 1
        if "valid_accuracy" in last:
            text += f", valid accuracy {last['valid_accuracy']:.4f}"
        if "images_per_sec" in last:
            text += f", {last['images_per_sec']:.1f} images/s"
    if status in {"Completed", "Failed", "Stopped"} and secondary != status:
        text += f"; {status}"
    return text


def rollout_line(point: dict[str, Any]) -> str:
    """A ``RolloutWatch`` sample: ``+  12.5 s  Updating    25% on the new fleet, live <config> (phase)``."""
    share = (
        "" if point.get("new_fleet_share") is None else f"{point['new_fleet_share']:.0%} on the new fleet, "
    )
    phase = f" ({point['phase']})" if point.get("phase") else ""
    return f"+{point['seconds']:6.1f} s  {point['status']:<11} {share}live {point['live_config']}{phase}"


def endpoint_line(endpoint: dict[str, Any], rollout_point: dict[str, Any] | None = None) -> str:
    """``endpoint <name>: Creating`` from DescribeEndpoint; during a blue/green update, the share of
    traffic on the new fleet and the rollout's phase (the newest ``RolloutWatch`` sample)."""
    text = f"endpoint {endpoint.get('EndpointName')}: {endpoint.get('EndpointStatus')}"
    counts = [v.get("CurrentInstanceCount") for v in endpoint.get("ProductionVariants", [])]
    if counts and all(c is not None for c in counts):
        text += f", {'+'.join(str(c) for c in counts)} instance(s)"
    if rollout_point and rollout_point.get("new_fleet_share") is not None:
        text += f", {rollout_point['new_fleet_share']:.0%} of traffic on the new fleet"
        if rollout_point.get("phase"):
            text += f" ({rollout_point['phase']})"
    if endpoint.get("FailureReason"):
        text += f"; {endpoint['FailureReason']}"
    return text


def status_panel(tasks: dict[str, str | None], lines: list[str], elapsed: float) -> Any:
    """The live display's bottom part: every task's state, then the newest job lines."""
    from rich.table import Table

    table = Table(
        title=f"dog_breed_pipeline, {elapsed:.0f} s", box=None, show_header=False, title_justify="left"
    )
    table.add_column("task")
    table.add_column("state")
    for task, state in tasks.items():
        table.add_row(task, _styled_state(state))
    for line in lines:
        table.add_row(line, "")
    return table


def _styled_state(state: str | None) -> str:
    colour = {"success": "green", "running": "yellow", "deferred": "cyan", "failed": "red"}.get(state or "")
    return f"[{colour}]{state}[/{colour}]" if colour else str(state or "-")


# -- the summary ----------------------------------------------------------------------------------
def summary_tables(summary: dict[str, Any]) -> list[Any]:
    """The run's summary as a few small tables: the DAG's tasks, tuning, each job's time, the
    final training, the endpoint, the smoke test's predictions, the registry, the rollout.
    Each one's title and caption are lines of their own, so a narrow table does not wrap them."""
    tables = [_tasks_table(summary)]
    if summary.get("tuning"):
        tables.append(_tuning_table(summary["tuning"]))
    jobs = [
        *summary.get("tuning", {}).get("trials_detail", []),
        *([summary["training"]] if summary.get("training") else []),
    ]
    if jobs:
        tables.append(_job_phases_table(jobs))
    if summary.get("training"):
        tables.append(_training_table(summary["training"]))
    if summary.get("endpoint"):
        tables.append(_endpoint_table(summary["endpoint"], summary.get("autoscaling") or []))
    if summary.get("smoke_test"):
        tables.append(_smoke_test_table(summary["smoke_test"]))
    if summary.get("registry"):
        tables.append(_registry_table(summary["registry"]))
    rollout = summary.get("rollout") or {}
    if rollout.get("timeline") or isinstance(rollout.get("routing"), dict):
        tables.append(_rollout_table(rollout))
    return [_with_own_title_lines(table) for table in tables]


def _with_own_title_lines(table: Any) -> Any:
    from rich.console import Group
    from rich.text import Text

    title, caption = table.title, table.caption
    table.title = table.caption = None
    return Group(Text(""), Text(str(title), style="bold"), table, *([Text(str(caption))] if caption else []))


def render_plain(renderables: list[Any], width: int = PLAIN_WIDTH) -> str:
    """The tables as a log file (or a test) sees them: plain text, no colour, fixed width."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=True, color_system=None, highlight=False)
    for renderable in renderables:
        console.print(renderable)
    return buffer.getvalue()


def _table(title: str, *columns: str, caption: str | None = None) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(
        title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, show_header=columns != _PAIRS
    )
    for column in columns:
        table.add_column(column, justify="right" if column in _NUMERIC or column.endswith(" s") else "left")
    return table


def _number(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _tasks_table(summary: dict[str, Any]) -> Any:
    seconds = summary.get("dag_seconds")
    title = f"DAG run {summary.get('run_id')}: {summary.get('run_state')}"
    if seconds is not None:
        title += f" in {seconds:.0f} s"
    table = _table(title, "task", "state", "s")
    durations = {d["task"]: d["seconds"] for d in summary.get("task_durations", [])}
    for task, state in summary.get("tasks", {}).items():
        table.add_row(task, state or "-", _number(durations.get(task), 1))
    return table


def _short(value: Any) -> str:
    """A hyperparameter as SageMaker returns it (a string), numbers to 3 significant digits."""
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return "-" if value is None else str(value)


def _tuning_table(tuning: dict[str, Any]) -> Any:
    best = tuning.get("best_objective") or {}
    caption = (
        f"best: {tuning.get('best_training_job')} {best.get('MetricName', '')} {_number(best.get('Value'))}"
    )
    trials = tuning.get("trials_detail", [])
    names = sorted({key for t in trials for key in (t.get("hyperparameters") or {})})
    table = _table(f"tuning {tuning.get('job')}: {tuning.get('status')}", "trial", "status", *names,
                   "objective", "s", caption=caption)  # fmt: skip
    for trial in trials:
        marker = " *" if trial["job"] == tuning.get("best_training_job") else ""
        parameters = [_short((trial.get("hyperparameters") or {}).get(name)) for name in names]
        table.add_row(trial["job"] + marker, str(trial.get("status")), *parameters,
                      _number(trial.get("objective")), _number(trial.get("seconds"), 0))  # fmt: skip
    return table


def _job_phases_table(jobs: list[dict[str, Any]]) -> Any:
    """Where each job's time went: its ``[timing]`` phases (download, start, train, ... upload).
    Rows are labelled short (``trial 001``, ``training``) so the phases fit; the names are above."""
    phases = [p for p in JOB_PHASES if any(p in (job.get("timings") or {}) for job in jobs)]
    table = _table("where each job's time went (seconds)", "job", *phases, "total")
    for job in jobs:
        timings = job.get("timings") or {}
        label = f"trial {job['job'].rsplit('-', 2)[-2]}" if "objective" in job else "training"
        table.add_row(label, *[_number(timings.get(p), 1) for p in phases], _number(job.get("seconds"), 0))
    return table


def _training_table(training: dict[str, Any]) -> Any:
    table = _table(f"training {training.get('job')}: {training.get('status')}", "what", "value")
    table.add_row("instances", str(training.get("instances")))
    table.add_row("epochs", str(training.get("epochs", "-")))
    table.add_row("test accuracy", _number(training.get("test_accuracy")))
    for name, value in (training.get("metrics") or {}).items():
        if name != "test:accuracy":
            table.add_row(name, _number(value))
    for rule, status in (training.get("debugger_rules") or {}).items():
        table.add_row(f"rule {rule}", str(status))
    return table


def _endpoint_table(endpoint: dict[str, Any], policies: list[dict[str, Any]]) -> Any:
    table = _table(f"endpoint {endpoint.get('name')}", "what", "value")
    if "error" in endpoint:
        table.add_row("error", endpoint["error"])
        return table
    table.add_row("status", str(endpoint.get("status")))
    table.add_row("config", str(endpoint.get("config")))
    table.add_row("instances", ", ".join(str(i) for i in endpoint.get("instances", [])))
    for policy in policies:
        table.add_row(
            "autoscaling",
            f"{policy['metric']} target {policy['target']:g}, cooldowns out {policy['scale_out_cooldown']} s"
            f" / in {policy['scale_in_cooldown']} s",
        )
    return table


def _smoke_test_table(smoke: dict[str, Any]) -> Any:
    p50, top = _number(smoke.get("latency_ms_p50"), 1), _number(smoke.get("latency_ms_max"), 1)
    caption = (
        f"{smoke.get('images')} images through the Lambda on {smoke.get('runtime')}: "
        f"top-1 {_number(smoke.get('top1_accuracy'), 2)}, latency p50 {p50} ms, max {top} ms"
    )
    table = _table(
        "smoke test", "image", "expected", "predicted", "probability", "latency ms", caption=caption
    )
    for p in smoke.get("predictions", []):
        table.add_row(
            p["image"], p["expected"], p["predicted"], _number(p["probability"]), _number(p["latency_ms"], 1)
        )
    for problem in smoke.get("problems", []):
        table.add_row("problem", problem, "", "", "")
    return table


def _registry_table(registry: dict[str, Any]) -> Any:
    if "error" in registry:
        table = _table(f"model registry {registry['group']}", "error")
        table.add_row(registry["error"])
        return table
    table = _table(f"model registry {registry['group']}: {len(registry['versions'])} version(s)",
                   "version", "status", "test accuracy", "test loss", "live", "approval")  # fmt: skip
    for v in registry["versions"]:
        accuracy, loss = _number(v["test_accuracy"]), _number(v["test_loss"], 3)
        live = "yes" if v["live"] else ""
        table.add_row(str(v["version"]), v["status"] or "-", accuracy, loss, live, v["approval"] or "")
    return table


def _rollout_table(rollout: dict[str, Any]) -> Any:
    alarms = ", ".join(f"{name} {state}" for name, state in (rollout.get("rollback_alarms") or {}).items())
    caption = f"routing {rollout.get('routing')}; rollback alarms: {alarms or 'none'}"
    if rollout.get("failure_reason"):
        caption += f"; rolled back: {rollout['failure_reason']}"
    table = _table("the rollout, traffic over time", "sample", caption=caption)
    for point in rollout.get("timeline", []):
        table.add_row(rollout_line(point))
    return table
