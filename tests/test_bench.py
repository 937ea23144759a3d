"""The bench machinery: its arithmetic, its baselines, and one tiny end-to-end run (speed is not asserted)."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.dag_parse import empty_dag_source
from bench.report import Check, Comparison
from bench.stats import interleaved, summarize


def test_speedup_reads_the_same_way_for_latency_and_throughput() -> None:
    latency = Comparison("p50", "ms", ours=20.0, baseline=100.0, better="lower", target_ratio=4.0)
    throughput = Comparison("rate", "images/s", ours=50.0, baseline=10.0, better="higher", target_ratio=4.0)
    assert latency.speedup == pytest.approx(5.0) and latency.met
    assert throughput.speedup == pytest.approx(5.0) and throughput.met
    slow = Comparison("rate", "images/s", ours=30.0, baseline=10.0, better="higher", target_ratio=4.0)
    assert slow.met is False and "MISSED by 25%" in slow.verdict()
    assert Comparison("x", "ms", 1.0, 2.0, "lower").met is None


def test_checks_compare_against_absolute_targets() -> None:
    assert Check("agreement", 99.5, "%", 99.0, at_least=True).met
    assert not Check("agreement", 98.0, "%", 99.0, at_least=True).met
    parse = Check("own parse", 130.0, "ms", 100.0, at_least=False)
    assert not parse.met and "MISSED by 30" in parse.verdict()


def test_summarize_percentiles_and_throughput() -> None:
    stats = summarize([0.010] * 9 + [0.110])
    assert stats.p50_ms == pytest.approx(10.0)
    assert stats.p90_ms == pytest.approx(20.0)
    assert stats.per_second == pytest.approx(1000.0 / 20.0)


def test_interleaved_alternates_blocks_and_warms_each_block() -> None:
    calls: list[tuple[str, int]] = []
    paths = {name: (lambda item, name=name: calls.append((name, item)) or item * 10) for name in ("a", "b")}
    runs = interleaved(paths, [1, 2, 3], block=2)
    assert calls == [
        ("a", 1),
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("b", 1),
        ("b", 2),
        ("a", 3),
        ("a", 3),
        ("b", 3),
        ("b", 3),
    ]
    assert runs["a"].outputs == [10, 20, 30] and len(runs["b"].seconds) == 3


def test_empty_dag_baseline_keeps_the_imports_and_drops_the_tasks(tmp_path: Path) -> None:
    dag_file = tmp_path / "dag.py"
    dag_file.write_text(
        "import json\nfrom airflow.sdk import dag, task\nfrom dog_breed import specs\n\n"
        "@dag(schedule=None)\ndef pipeline():\n    @task\n    def work():\n        return specs\n"
        "    work()\n\npipeline()\n"
    )
    baseline = empty_dag_source(dag_file)
    tree = ast.parse(baseline)
    imported = [ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert imported[:3] == ["import json", "from airflow.sdk import dag, task", "from dog_breed import specs"]
    assert "def work" not in baseline and "bench_empty_baseline" in baseline


@pytest.mark.slow
def test_quick_bench_writes_every_section(tmp_path: Path, capsys) -> None:
    results_path = tmp_path / "results.json"
    assert main(["--quick", "--output", str(results_path), "--cache-dir", str(tmp_path / "cache")]) == 0
    results = json.loads(results_path.read_text())
    assert results["machine"]["cpu"]["physical_cores"] >= 1
    assert results["machine"]["torch"] and results["machine"]["onnxruntime"]
    sections = {section["name"]: section for section in results["sections"]}
    assert len(sections) == 4
    for section in sections.values():
        if section["skipped"]:
            # Only a missing prerequisite may skip a section; a crash is a failure.
            assert not section["skipped"].startswith("failed"), section["skipped"]
            continue
        for figure in section["comparisons"]:
            assert figure["ours"] > 0 and figure["baseline"] > 0 and math.isfinite(figure["speedup"])
    serving = next(s for name, s in sections.items() if name.startswith("serving"))
    assert not serving["skipped"], "the serving section has everything it needs in the tree"
    checks = {check["name"].split(" (")[0] for check in serving["checks"]}
    assert checks == {"top-1 agreement stock vs int8", "model-only, fastest runtime"}
    assert serving["details"]["handler"]["images"] >= 1
    assert serving["details"]["served_runtime"] == "openvino-int8"  # what model_fn serves by default
    assert {"onnx int8", "openvino int8"} <= set(serving["details"]["model_only"])
    peaks = serving["details"]["peaks"]
    assert peaks["int8_gops"] == max(peaks["int8_gops_onnxruntime"], peaks["int8_gops_openvino"]) > 0
    assert serving["details"]["hard_case"]["images"] >= 1
    recipes = serving["details"]["int8_recipes"]
    assert {row["recipe"].split(",")[0] for row in recipes} == {"MinMax", "Entropy", "Percentile"}
    assert sum(row["default"] for row in recipes) == 1
    assert serving["details"]["int8_sensitivity"]["lowest_activation_sqnr_db"]
    training = next(s for name, s in sections.items() if name.startswith("training"))
    assert not training["skipped"]
    figures = training["details"]["training_32px"]["paths"]
    assert {"plain fp32", "train.py"} <= set(figures)
    assert all(figure["fraction_of_peak"] > 0 for figure in figures.values())
    assert results["wall_seconds"] > 0
    printed = capsys.readouterr().out
    assert "handler throughput" in printed and f"written to {results_path}" in printed
    assert "[" in printed and "s] -- training ..." in printed, "plain progress lines when not a terminal"


def test_progress_is_plain_lines_with_elapsed_time_when_not_a_terminal(capsys) -> None:
    from bench.progress import BenchProgress

    progress = BenchProgress(["serving"], live=False)
    with progress.running():
        progress.start("serving")
        progress.step("serving", "   handlers ...")
        progress.finish("serving", "done in 1 s")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "-- serving ...",
        "   handlers ...",
        "-- serving: done in 1 s",
    ]
    assert all(line.startswith("[") and " s] " in line for line in lines)
