"""`python -m bench [--quick] [--only serving,training,...]`: run with progress, print, write results."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from bench.config import FULL, QUICK, REPO_ROOT, BenchConfig
from bench.progress import BenchProgress
from bench.report import SectionResult, format_section, write_results

SECTIONS = ("serving", "training", "dag_parse", "lambda_invoke")


def run_section(name: str, config: BenchConfig, progress: BenchProgress) -> SectionResult:
    import importlib

    progress.start(name)
    began = time.perf_counter()
    try:
        module = importlib.import_module(f"bench.{name}")
        result = module.run(config, log=lambda line: progress.step(name, line))
    except Exception as error:  # one broken section must not hide the others' figures
        progress.print(traceback.format_exc())
        result = SectionResult(name, skipped=f"failed: {type(error).__name__}: {error}")
    seconds = time.perf_counter() - began
    result.details["section_seconds"] = round(seconds, 1)
    # Other work on the machine inflates every figure: keep how busy it was beside them.
    result.details["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    progress.finish(name, f"{'skipped' if result.skipped else 'done'} in {seconds:.0f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the machinery, not the speed"
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--output", type=Path, help="results file (default bench/results.json)")
    parser.add_argument("--cache-dir", type=Path, help="where the sample models are kept between runs")
    args = parser.parse_args(argv)
    # The bench imports the container code (model_scripts) and the plugin package as the runtimes do.
    for path in (REPO_ROOT / "model_scripts", REPO_ROOT / "plugins", REPO_ROOT):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    config = QUICK if args.quick else FULL
    config = config.with_paths(args.cache_dir or config.cache_dir, args.output or config.results_path)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")

    from bench.machine import machine_info

    machine = machine_info()
    cpu = machine["cpu"]
    print(
        f"bench ({config.name}) on {cpu['model']}, {cpu['physical_cores']} physical cores, "
        f"{' '.join(cpu['flags'])}; torch {machine['torch']}, onnxruntime {machine['onnxruntime']}, "
        f"openvino {machine['openvino']}",
        flush=True,
    )
    progress = BenchProgress(chosen)
    results = []
    with progress.running():
        for name in chosen:
            result = run_section(name, config, progress)
            results.append(result)
            progress.print(format_section(result))
    wall = progress.elapsed()
    write_results(config.results_path, machine, asdict(config), results, wall_seconds=wall)
    print(f"\nwritten to {config.results_path}")
    print("\n".join(format_section(result) for result in results))
    print(f"\nbench wall time {wall:.0f} s ({wall / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
