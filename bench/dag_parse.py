"""Section 3: DAG parse time, ours against an empty DAG file with the same top-level imports.

Each parse runs in a fresh interpreter that has already imported Airflow's
DagBag, so both files pay the same interpreter and Airflow start-up; the
difference is what our file costs on its own (its imports, Params, tasks).
"""

from __future__ import annotations

import ast
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.config import REPO_ROOT, BenchConfig
from bench.report import Check, Comparison, SectionResult

DAG_FILE = REPO_ROOT / "dags" / "dog_breed_pipeline.py"
OWN_PARSE_TARGET_MS = 100.0

PARSE_ONE_FILE = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
began = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - began
errors = {path: str(error) for path, error in bag.import_errors.items()}
print(json.dumps({"ms": elapsed * 1000, "dags": len(bag.dags), "errors": errors}))
"""


def empty_dag_source(dag_file: Path) -> str:
    """The DAG file's module-level imports, then one DAG with no tasks."""
    tree = ast.parse(dag_file.read_text(encoding="utf-8"))
    imports = [
        ast.get_source_segment(dag_file.read_text(encoding="utf-8"), node)
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    return "\n".join(
        [
            '"""Parse-time baseline: the airflow DAG file\'s imports and an empty dag."""',
            *imports,
            "from airflow.sdk import DAG as _BaselineDAG",
            'with _BaselineDAG(dag_id="bench_empty_baseline", schedule=None):',
            "    pass",
            "",
        ]
    )


def parse_ms(dag_file: Path, airflow_home: Path) -> float:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dag_file.parent),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]),
    }
    completed = subprocess.run(
        [sys.executable, "-c", PARSE_ONE_FILE, str(dag_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO_ROOT,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"parsing {dag_file} failed: {completed.stderr[-2000:]}")
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    if outcome["errors"] or outcome["dags"] < 1:
        raise RuntimeError(f"{dag_file} did not parse into a DAG: {outcome['errors']}")
    return float(outcome["ms"])


def run(config: BenchConfig, log: Callable[[str], None] = print, dag_file: Path = DAG_FILE) -> SectionResult:
    result = SectionResult("DAG parse: our DAG vs an empty DAG with the same imports")
    if not dag_file.is_file():
        result.skipped = f"{dag_file.relative_to(REPO_ROOT)} does not exist yet"
        return result
    with tempfile.TemporaryDirectory(prefix="bench-dag-") as scratch:
        baseline_file = Path(scratch) / "dags" / "empty_baseline_dag.py"
        baseline_file.parent.mkdir()
        baseline_file.write_text(empty_dag_source(dag_file), encoding="utf-8")
        airflow_home = Path(scratch) / "airflow"
        airflow_home.mkdir()
        ours, baseline = [], []
        for _ in range(config.dag_parse_repeats):  # alternate so load drift hits both equally
            ours.append(parse_ms(dag_file, airflow_home))
            baseline.append(parse_ms(baseline_file, airflow_home))
    ours_ms, baseline_ms = statistics.median(ours), statistics.median(baseline)
    result.comparisons.append(
        Comparison(
            "DagBag parse, median of fresh processes",
            "ms",
            ours_ms,
            baseline_ms,
            "lower",
            ours_label="ours",
            baseline_label="empty",
        )
    )
    result.checks.append(
        Check(
            "our DAG's own parse time (ours - empty)",
            ours_ms - baseline_ms,
            "ms",
            OWN_PARSE_TARGET_MS,
            at_least=False,
        )
    )
    result.details = {"ours_ms": ours, "empty_ms": baseline}
    return result
