"""local_aws's system profiler and ProfilerReport, piece by piece: the records it writes, the
rules on synthetic profiles, the report's HTML. The whole path through a real job is in
tests/test_local_aws_training.py."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from local_aws.services.sagemaker.training import profiler_report, profiler_rules, system_monitor
from local_aws.services.sagemaker.training.profiler_rules import (
    RULES,
    HostMetrics,
    JobTimeline,
    ProfileData,
    RuleParameterError,
    Series,
)
from local_aws.services.sagemaker.training.system_monitor import GroupSample, GroupSampler

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
GENERATED = dt.datetime(2023, 11, 14, 22, 15, tzinfo=dt.UTC)
APPLICABLE = {"StepOutlier", "BatchSize", "MaxInitializationTime", "OverallSystemUsage"}


def sample(timestamp: float, busy: dict[int, float], memory: float = 10.0, written: int = 0) -> GroupSample:
    return GroupSample(
        timestamp=timestamp,
        seconds=0.5,
        core_seconds=busy,
        cores=2,
        memory_percent=memory,
        read_bytes=0,
        write_bytes=written,
    )


def profile(cpu: list[float], memory: list[float], host: str = "algo-1", **timeline) -> ProfileData:
    """A profile of one host whose two cores each ran at ``cpu[i]`` percent in sample ``i``."""
    lines = [
        json.dumps(record)
        for i, (busy, used) in enumerate(zip(cpu, memory, strict=True))
        for record in system_monitor.records(
            host, sample(START + i / 2, {0: busy / 200, 1: busy / 200}, used)
        )
    ]
    return ProfileData(profiler_rules.parse_system_metrics(lines), JobTimeline(**timeline))


# -- what the monitor writes -------------------------------------------------------------------
def test_a_sample_becomes_debuggers_system_metric_records():
    records = system_monitor.records(
        "algo-2", sample(START + 0.25, {1: 0.25}, memory=12.345, written=1_000_000)
    )

    assert {tuple(sorted(r)) for r in records} == {
        ("Dimension", "Name", "NodeId", "Timestamp", "Type", "Value")
    }
    by_name = {r["Name"]: r for r in records}
    assert by_name["cpu0"] == {
        "Name": "cpu0", "Type": "cpu", "Timestamp": START + 0.25, "Value": 0.0,
        "Dimension": "CPUUtilization", "NodeId": "algo-2",
    }  # fmt: skip
    assert by_name["cpu1"]["Value"] == 50.0  # 0.25 s of CPU in a 0.5 s interval
    assert (by_name["MemoryUsedPercent"]["Type"], by_name["MemoryUsedPercent"]["Value"]) == ("memory", 12.35)
    assert by_name["WriteThroughputInBytesPerSecond"]["Value"] == 2_000_000.0
    assert by_name["ReadThroughputInBytesPerSecond"]["Type"] == "i/o"


def test_a_core_is_never_more_than_fully_busy():
    (cpu0,) = [r for r in system_monitor.records("algo-1", sample(START, {0: 0.6})) if r["Name"] == "cpu0"]
    assert cpu0["Value"] == 100.0


def test_samples_go_to_one_file_per_host_and_minute_in_an_hour_folder():
    path = system_monitor.metrics_file("algo-1", START + 39.9)  # 20 s past a minute, plus 39.9
    assert path == "system/incremental/2023111422/1699999980.algo-1.json"
    assert (
        system_monitor.metrics_file("algo-1", START + 40)
        == "system/incremental/2023111422/1700000040.algo-1.json"
    )
    # smdebug's reader only accepts files named like this (smdebug/profiler/utils.py)
    assert re.match(r".+/system/.+/(\d{10}).algo-\d+.json", f"s3://b/job/profiler-output/{path}")


def test_the_sampler_measures_a_process_groups_cpu_and_disk_writes(tmp_path: Path):
    partition = max(
        (p for p in psutil.disk_partitions(all=True) if str(tmp_path).startswith(p.mountpoint)),
        key=lambda p: len(p.mountpoint),
    )
    if partition.fstype in {"tmpfs", "ramfs"}:
        pytest.skip(f"{tmp_path} is on {partition.fstype}: nothing reaches a storage layer")
    target = tmp_path / "written.bin"
    child = f"""
import os, subprocess, sys, time
began = time.time()
while time.time() - began < 1.0:
    pass
with open({str(target)!r}, "wb") as file:
    file.write(os.urandom(3_000_000))
    file.flush()
    os.fsync(file.fileno())
time.sleep(2)
"""
    process = subprocess.Popen([sys.executable, "-c", child], start_new_session=True)
    try:
        sampler = GroupSampler(process.pid)
        deadline = time.monotonic() + 30
        while not target.exists() or target.stat().st_size < 3_000_000:
            assert time.monotonic() < deadline, "the child never wrote its file"
            time.sleep(0.1)
        time.sleep(0.2)
        measured = sampler.sample()
    finally:
        process.kill()
        process.wait()

    assert measured is not None
    assert sum(measured.core_seconds.values()) > 0.05  # a busy loop for a second, on a shared machine
    assert set(measured.core_seconds) <= set(range(psutil.cpu_count()))
    assert measured.write_bytes >= 3_000_000
    assert 0 < measured.memory_percent < 100
    assert sampler.sample() is None  # the leader is gone


def test_records_read_back_per_host_and_metric_with_the_cpu_total_as_the_mean_over_cores():
    lines = [
        json.dumps(r)
        for i in range(3)
        for host in ("algo-2", "algo-1")
        for r in system_monitor.records(host, sample(START + i, {0: 0.5, 1: 0.1 * i}))
    ]
    hosts = profiler_rules.parse_system_metrics(reversed([*lines, "not json", '{"Name": "cpu0"}']))

    assert list(hosts) == ["algo-1", "algo-2"]
    metrics = hosts["algo-1"]
    assert sorted(metrics.cores) == ["cpu0", "cpu1"]
    assert metrics.cores["cpu0"].timestamps == [START, START + 1, START + 2]  # sorted again
    assert metrics.cpu_total().values == pytest.approx([50.0, 60.0, 70.0])
    assert metrics.datapoints == 3


# -- the rules ---------------------------------------------------------------------------------
def test_every_rule_of_awss_profiler_report_is_there_in_its_order():
    assert list(RULES) == [
        "CPUBottleneck", "IOBottleneck", "LowGPUUtilization", "StepOutlier", "GPUMemoryIncrease",
        "BatchSize", "MaxInitializationTime", "LoadBalancing", "OverallSystemUsage", "Dataloader",
        "OverallFrameworkMetrics",
    ]  # fmt: skip


def test_gpu_and_framework_rules_say_why_they_do_not_apply():
    findings = profiler_rules.evaluate_report(profile([90.0] * 5, [5.0] * 5), {})

    inapplicable = {f.rule: f for f in findings if f.verdict == "not applicable"}
    assert set(inapplicable) == set(RULES) - APPLICABLE
    assert "no GPU" in inapplicable["LowGPUUtilization"].summary
    assert "framework metrics" in inapplicable["Dataloader"].summary
    assert inapplicable["CPUBottleneck"].parameters == {
        "threshold": 50, "gpu_threshold": 10, "cpu_threshold": 90, "patience": 1000
    }  # fmt: skip


def test_batch_size_flags_an_underused_instance_once_it_has_enough_datapoints():
    idle = profile([20.0] * 1600, [8.0] * 1600)
    finding = profiler_rules.evaluate("BatchSize", idle)
    assert finding.verdict == "issue" and "algo-1" in finding.summary
    assert finding.details["algo-1"]["cpu"]["p95"] == 20.0

    busy = profile([20.0] * 1100 + [95.0] * 500, [8.0] * 1600)
    assert profiler_rules.evaluate("BatchSize", busy).verdict == "ok"  # the last window is busy

    short = profile([20.0] * 800, [8.0] * 800)
    assert profiler_rules.evaluate("BatchSize", short).verdict == "not enough data"  # patience 1000
    tuned = profiler_rules.evaluate("BatchSize", short, {"patience": "100", "window": "50"})
    assert tuned.verdict == "issue"


def test_step_outlier_compares_each_epoch_with_the_others():
    epochs = JobTimeline(epoch_ends=(10, 20, 31, 41, 90), first_epoch_start=0)
    data = ProfileData({}, epochs)

    default = profiler_rules.evaluate("StepOutlier", data)
    assert default.verdict == "ok"  # AWS's default lets 10 outliers pass
    assert default.details["step_details"]["epochs"]["step_numbers"] == [5]
    strict = profiler_rules.evaluate("StepOutlier", data, {"n_outliers": "0"})
    assert (strict.verdict, strict.violations) == ("issue", 1)
    assert "epochs [5]" in strict.summary

    steady = ProfileData({}, JobTimeline(epoch_ends=(10, 20, 30, 40), first_epoch_start=0))
    assert profiler_rules.evaluate("StepOutlier", steady, {"n_outliers": "0"}).verdict == "ok"
    two = ProfileData({}, JobTimeline(epoch_ends=(10, 20)))
    assert profiler_rules.evaluate("StepOutlier", two).verdict == "not enough data"


def test_max_initialization_time_is_the_start_and_data_phases():
    slow = ProfileData(
        {}, JobTimeline(phases={"algo-1": {"start": 30.0}, "algo-2": {"start": 1000, "data": 300}})
    )
    finding = profiler_rules.evaluate("MaxInitializationTime", slow)
    assert finding.verdict == "issue" and "1300.0 s on algo-2" in finding.summary
    assert profiler_rules.evaluate("MaxInitializationTime", slow, {"threshold": "30"}).verdict == "ok"
    unknown = ProfileData({}, JobTimeline(phases={"algo-1": {"train": 5.0}}))
    assert profiler_rules.evaluate("MaxInitializationTime", unknown).verdict == "not enough data"


def test_the_first_epoch_starts_after_the_main_hosts_start_and_data_phases():
    timeline = JobTimeline.build(
        [START + 30, START + 20], {"algo-1": {"start": 4.0, "data": 6.0}}, {"algo-1": START}
    )
    assert timeline.epoch_durations() == [(1, 10.0), (2, 10.0)]
    assert timeline.initialization_seconds() == {"algo-1": 10.0}
    unknown_start = JobTimeline.build([START + 20, START + 30], {}, {"algo-1": START})
    assert unknown_start.epoch_durations() == [(2, 10.0)]


def test_overall_system_usage_reports_percentiles_and_never_triggers():
    finding = profiler_rules.evaluate("OverallSystemUsage", profile([10.0, 20.0, 30.0, 90.0], [5.0] * 4))
    assert finding.verdict == "ok"
    assert finding.details["CPU"]["algo-1"]["max"] == 90.0
    assert finding.details["CPU memory"]["algo-1"]["p50"] == 5.0
    assert profiler_rules.evaluate("OverallSystemUsage", ProfileData({}, JobTimeline())).verdict == (
        "not enough data"
    )


def test_a_rule_report_is_shaped_as_awss_json():
    finding = profiler_rules.evaluate(
        "MaxInitializationTime", ProfileData({}, JobTimeline(phases={"algo-1": {"start": 2.0}}))
    )
    assert finding.report() == {
        "RuleTriggered": 0,
        "Violations": 0,
        "Details": {"initialization_seconds": {"algo-1": 2.0}},
        "Datapoints": 1,
        "RuleParameters": "threshold:20",
    }


def test_profiler_report_parameters_are_rule_underscore_parameter():
    data = profile([20.0] * 40, [8.0] * 40, phases={"algo-1": {"start": 5.0}})
    findings = profiler_rules.evaluate_report(
        data,
        {"rule_to_invoke": "ProfilerReport", "BatchSize_patience": "10", "BatchSize_window": "20",
         "MaxInitializationTime_threshold": "0"},
    )  # fmt: skip
    status, details = profiler_rules.report_summary(findings)

    assert {f.rule for f in findings if f.triggered} == {"BatchSize", "MaxInitializationTime"}
    assert status == "IssuesFound"
    assert details.startswith("Issues: BatchSize: Underused")
    assert "Not enough data for StepOutlier." in details
    assert "Not applicable on a CPU instance without framework metrics: CPUBottleneck" in details

    quiet = profiler_rules.evaluate_report(data, {})
    assert profiler_rules.report_summary(quiet)[0] == "NoIssuesFound"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"StepOutlier_sigma": "2"}, "StepOutlier has no parameter 'sigma' (it takes stddev, n_outliers)"),
        ({"BatchSize_window": "many"}, "BatchSize parameter window must be a number, not 'many'"),
        ({"BatchSize_window": "nan"}, "must be a number"),
        ({"Unknown_threshold": "1"}, "is not <Rule>_<parameter>"),
        ({"threshold": "1"}, "is not <Rule>_<parameter>"),
    ],
)
def test_a_wrong_parameter_is_an_error_that_names_it(parameters, message):
    with pytest.raises(RuleParameterError, match=re.escape(message)):
        profiler_rules.evaluate_report(profile([1.0], [1.0]), parameters)


# -- the report --------------------------------------------------------------------------------
def test_long_series_are_averaged_down_for_the_charts():
    series = Series(list(range(10_001)), [float(i % 2) for i in range(10_001)])
    times, values = profiler_report.downsample(series, max_points=1000)
    assert len(times) <= 1000
    assert sum(values) / len(values) == pytest.approx(0.5, abs=0.01)
    assert profiler_report.downsample(Series([1.0], [2.0])) == ([1.0], [2.0])


def test_the_report_has_the_charts_and_the_bottleneck_table_with_plotly_inside():
    data = profile(
        [30.0, 60.0, 90.0],
        [5.0, 6.0, 7.0],
        epoch_ends=(START + 5, START + 9, START + 14),
        first_epoch_start=START,
        phases={"algo-1": {"start": 1.0, "train": 12.0}},
    )
    findings = profiler_rules.evaluate_report(data, {})
    status, details = profiler_rules.report_summary(findings)
    context = profiler_report.ReportContext(
        training_job="job-1", instance_type="ml.m5.large", instance_count=1, interval_ms=500,
        status=status, status_details=details, system_metrics_uri="s3://b/job-1/profiler-output/system/",
        generated=GENERATED,
    )  # fmt: skip

    html = profiler_report.render(context, data, findings)

    for chart in ("cpu-algo-1", "memory", "disk-io", "epoch-durations", "phases"):
        assert f'id="{chart}" class="plotly-graph-div"' in html
    for title in ("CPU utilization over time, algo-1", "Epoch duration", "Time per phase"):
        assert title in html
    assert len(re.findall(r'<tr data-rule="(\w+)">', html)) == len(RULES)
    assert "<script src=" not in html  # plotly.js is inside: the page opens offline
    assert html.count('class="plotly-graph-div"') == 5
    assert 'Rule status: <span class="status">NoIssuesFound</span>' in html


def test_a_host_without_cores_gets_no_cpu_chart():
    data = ProfileData({"algo-1": HostMetrics()}, JobTimeline())
    context = profiler_report.ReportContext(
        "j", "ml.m5.large", 1, 500, "NoIssuesFound", "", "s3://b/", GENERATED
    )
    html = profiler_report.render(context, data, profiler_rules.evaluate_report(data, {}))
    assert "plotly-graph-div" not in html and "No system metrics were sampled." in html
