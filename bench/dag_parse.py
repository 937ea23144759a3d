"""Section 3: DAG parse time, ours against an empty DAG file with the same top-level imports.

Each parse runs in a fresh child forked from one interpreter that has already
imported Airflow's DagBag, as Airflow 3's DAG processor forks one process per
file (and, like its manager, calls ``gc.freeze()`` first, or the children's
garbage collections would copy the whole inherited heap page by page, 50 ms
and more). That interpreter has also run the DAG file's imports, which both files
share, and parsed the empty file once: what those cost (~0.7 s here, varying
by 0.1 s between runs) would count for both and only add noise. So the
difference is what our file costs on its own: its Params, tasks and
operators. Forking keeps the section to seconds.
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

# Arguments: the shared imports' source, a file to parse first, the DAG files in parse order.
# Prints a JSON list.
PARSE_IN_FORKED_CHILDREN = """
import gc, json, os, sys, time, traceback
from airflow.dag_processing.dagbag import DagBag
exec(compile(sys.argv[1], "<shared imports>", "exec"), {})
DagBag(dag_folder=sys.argv[2])  # what any first parse initializes (the baseline file's own cost)
gc.freeze()  # as the DAG processor's manager does before forking: no copy-on-write of the heap by GC
results = []
for path in sys.argv[3:]:
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        try:
            began = time.perf_counter()
            bag = DagBag(dag_folder=path)
            elapsed = time.perf_counter() - began
            errors = {name: str(error) for name, error in bag.import_errors.items()}
            outcome = {"ms": elapsed * 1000, "dags": len(bag.dags), "errors": errors}
        except BaseException:
            outcome = {"ms": None, "dags": 0, "errors": {path: traceback.format_exc()}}
        os.write(write_end, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(child, 0)
    failed = {"ms": None, "dags": 0, "errors": {path: f"parse child exited with status {status}"}}
    results.append(json.loads(payload) if payload else failed)
print(json.dumps(results))
"""


def shared_imports(dag_file: Path) -> str:
    """The DAG file's module-level import statements."""
    source = dag_file.read_text(encoding="utf-8")
    return "\n".join(
        ast.get_source_segment(source, node) or ""
        for node in ast.parse(source).body
        if isinstance(node, ast.Import | ast.ImportFrom)
    )


def empty_dag_source(dag_file: Path) -> str:
    """The DAG file's module-level imports, then one DAG with no tasks."""
    return "\n".join(
        [
            '"""Parse-time baseline: the airflow DAG file\'s imports and an empty dag."""',
            shared_imports(dag_file),
            "from airflow.sdk import DAG as _BaselineDAG",
            'with _BaselineDAG(dag_id="bench_empty_baseline", schedule=None):',
            "    pass",
            "",
        ]
    )


def parse_ms(dag_files: list[Path], shared_imports: str, first_file: Path, airflow_home: Path) -> list[float]:
    """DagBag parse time of each file, each in its own child of one interpreter that ran
    ``shared_imports`` and parsed ``first_file``."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dag_files[0].parent),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]),
    }
    completed = subprocess.run(
        [sys.executable, "-c", PARSE_IN_FORKED_CHILDREN, shared_imports, str(first_file)]
        + [str(dag_file) for dag_file in dag_files],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO_ROOT,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"parsing {dag_files} failed: {completed.stderr[-2000:]}")
    outcomes = json.loads(completed.stdout.strip().splitlines()[-1])
    for dag_file, outcome in zip(dag_files, outcomes, strict=True):
        if outcome["errors"] or outcome["dags"] < 1:
            raise RuntimeError(f"{dag_file} did not parse into a DAG: {outcome['errors']}")
    return [float(outcome["ms"]) for outcome in outcomes]


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
        # Alternate so load drift hits both equally.
        times = parse_ms(
            [dag_file, baseline_file] * config.dag_parse_repeats,
            shared_imports(dag_file),
            baseline_file,
            airflow_home,
        )
        ours, baseline = times[0::2], times[1::2]
    ours_ms, baseline_ms = statistics.median(ours), statistics.median(baseline)
    result.comparisons.append(
        Comparison(
            "DagBag parse, median of forked children",
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
