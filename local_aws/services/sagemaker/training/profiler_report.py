"""The ProfilerReport rule's HTML: utilization over time, epoch and phase durations, the rules' findings.

Charts are drawn by plotly, with plotly.js embedded once in the page, so the report opens
offline, from a file or from S3, and inside a ``Content-Security-Policy: sandbox allow-scripts``
frame (inline scripts, no other origin). Long series are averaged into at most
``MAX_POINTS`` points per line, so a day-long job still makes a page a browser can draw.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_aws.services.sagemaker.training.profiler_rules import (
    RULES,
    Finding,
    ProfileData,
    Series,
    format_number,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_POINTS = 2000
_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "height": 360,
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
    "legend": {"orientation": "h", "y": -0.2},
}
VERDICT_LABELS = {
    "issue": "issue found",
    "ok": "no issue",
    "not enough data": "not enough data",
    "not applicable": "not applicable",
}


@dataclass(frozen=True)
class ReportContext:
    """What the report says about the job besides its profile."""

    training_job: str
    instance_type: str
    instance_count: int
    interval_ms: int
    status: str  # the ProfilerReport rule's RuleEvaluationStatus
    status_details: str
    system_metrics_uri: str
    generated: dt.datetime


def downsample(series: Series, max_points: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """(timestamps, values) with runs of consecutive points averaged into at most ``max_points``."""
    count = len(series)
    if count <= max_points:
        return list(series.timestamps), list(series.values)
    size = -(-count // max_points)  # ceiling division
    times, values = [], []
    for start in range(0, count, size):
        chunk = slice(start, start + size)
        chunk_times, chunk_values = series.timestamps[chunk], series.values[chunk]
        times.append(sum(chunk_times) / len(chunk_times))
        values.append(sum(chunk_values) / len(chunk_values))
    return times, values


def _utc(timestamps: Sequence[float]) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(t, dt.UTC) for t in timestamps]


def _line(name: str, series: Series, scale: float = 1.0, **style: Any) -> Any:
    import plotly.graph_objects as go

    times, values = downsample(series)
    return go.Scatter(name=name, x=_utc(times), y=[v * scale for v in values], mode="lines", **style)


def cpu_figure(host: str, cores: Mapping[str, Series], total: Series) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure([_line(core, cores[core], line={"width": 1}) for core in _core_order(cores)])
    figure.add_trace(_line("total (mean over cores)", total, line={"width": 3, "color": "#212121"}))
    figure.update_layout(
        **_LAYOUT,
        title=f"CPU utilization over time, {host}",
        xaxis={"title": "time (UTC)"},
        yaxis={"title": "% of a core", "range": [0, 105]},
    )
    return figure


def memory_figure(data: ProfileData) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure([_line(host, metrics.memory) for host, metrics in data.hosts.items()])
    figure.update_layout(
        **_LAYOUT,
        title="Memory used over time (% of the machine's memory)",
        xaxis={"title": "time (UTC)"},
        yaxis={"title": "% of memory", "rangemode": "tozero"},
    )
    return figure


def disk_figure(data: ProfileData) -> Any:
    import plotly.graph_objects as go

    megabytes = 1 / 1_000_000
    traces = []
    for host, metrics in data.hosts.items():
        traces.append(_line(f"{host} read", metrics.read, megabytes))
        traces.append(_line(f"{host} write", metrics.write, megabytes, line={"dash": "dot"}))
    figure = go.Figure(traces)
    figure.update_layout(
        **_LAYOUT,
        title="Disk I/O throughput over time",
        xaxis={"title": "time (UTC)"},
        yaxis={"title": "MB/s", "rangemode": "tozero"},
    )
    return figure


def epoch_figure(durations: Sequence[tuple[int, float]], outliers: Sequence[int]) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure(
        go.Bar(
            name="epoch duration",
            x=[epoch for epoch, _ in durations],
            y=[seconds for _, seconds in durations],
            marker={"color": ["#c62828" if epoch in outliers else "#1565c0" for epoch, _ in durations]},
            hovertemplate="epoch %{x}: %{y:.1f} s<extra></extra>",
        )
    )
    figure.update_layout(
        **_LAYOUT,
        title="Epoch duration (red: StepOutlier's outliers)",
        xaxis={"title": "epoch", "dtick": 1},
        yaxis={"title": "seconds", "rangemode": "tozero"},
    )
    return figure


def phase_figure(phases: Mapping[str, Mapping[str, float]]) -> Any:
    import plotly.graph_objects as go

    names = list(dict.fromkeys(name for host_phases in phases.values() for name in host_phases))
    figure = go.Figure(
        [
            go.Bar(name=host, y=names, x=[host_phases.get(n, 0.0) for n in names], orientation="h")
            for host, host_phases in phases.items()
        ]
    )
    figure.update_layout(
        **_LAYOUT,
        title="Time per phase ([timing] lines)",
        barmode="group",
        xaxis={"title": "seconds", "rangemode": "tozero"},
        yaxis={"autorange": "reversed"},
    )
    return figure


def _core_order(cores: Mapping[str, Series]) -> list[str]:
    return sorted(cores, key=lambda name: (len(name), name))  # cpu2 before cpu10


def _html(figure: Any, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(
        figure, include_plotlyjs=False, full_html=False, div_id=div_id, config={"displaylogo": False}
    )


def render(context: ReportContext, data: ProfileData, findings: Sequence[Finding]) -> str:
    """The report page, plotly.js included."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from plotly.offline import get_plotlyjs

    utilization: list[tuple[str, str]] = []  # (id, HTML)
    for host, metrics in data.hosts.items():
        if metrics.cores:
            figure = cpu_figure(host, metrics.cores, metrics.cpu_total())
            utilization.append((f"cpu-{host}", _html(figure, f"cpu-{host}")))
    if any(m.datapoints for m in data.hosts.values()):
        utilization.append(("memory", _html(memory_figure(data), "memory")))
        utilization.append(("disk-io", _html(disk_figure(data), "disk-io")))
    timing: list[tuple[str, str]] = []
    durations = data.timeline.epoch_durations()
    by_rule = {finding.rule: finding for finding in findings}
    if durations:
        figure = epoch_figure(durations, _outlier_epochs(by_rule.get("StepOutlier")))
        timing.append(("epoch-durations", _html(figure, "epoch-durations")))
    if data.timeline.phases:
        timing.append(("phases", _html(phase_figure(data.timeline.phases), "phases")))

    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    environment.filters["number"] = format_number
    usage = by_rule.get("OverallSystemUsage")
    return environment.get_template("profiler_report.html").render(
        context=context,
        findings=findings,
        descriptions={name: rule.description for name, rule in RULES.items()},
        verdict_labels=VERDICT_LABELS,
        usage=usage.details if usage else {},
        utilization_charts=utilization,
        timing_charts=timing,
        plotly_js=get_plotlyjs(),
    )


def _outlier_epochs(finding: Finding | None) -> list[int]:
    if finding is None:
        return []
    details = finding.details.get("step_details", {}).get("epochs", {})
    return list(details.get("step_numbers", []))
