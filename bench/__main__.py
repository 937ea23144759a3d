"""`python -m bench [--quick] [--only serving,training,...]`: run, print the table, write results.json."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from bench.config import FULL, QUICK, REPO_ROOT, BenchConfig
from bench.report import SectionResult, format_section, write_results

SECTIONS = ("serving", "training", "dag_parse", "lambda_invoke")


def run_section(name: str, config: BenchConfig) -> SectionResult:
    import importlib

    module = importlib.import_module(f"bench.{name}")
    began = time.perf_counter()
    try:
        result = module.run(config, log=lambda line: print(line, flush=True))
    except Exception as error:  # one broken section must not hide the others' figures
        traceback.print_exc()
        result = SectionResult(name, skipped=f"failed: {type(error).__name__}: {error}")
    result.details["section_seconds"] = round(time.perf_counter() - began, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the machinery, not the speed"
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--output", type=Path, help="results file (default bench/results.json)")
    parser.add_argument("--cache-dir", type=Path, help="where the sample model is kept between runs")
    args = parser.parse_args(argv)
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
        f"{' '.join(cpu['flags'])}; torch {machine['torch']}, onnxruntime {machine['onnxruntime']}",
        flush=True,
    )
    results = []
    for name in chosen:
        print(f"-- {name} ...", flush=True)
        result = run_section(name, config)
        results.append(result)
        print(format_section(result), flush=True)
    write_results(config.results_path, machine, asdict(config), results)
    print(f"\nwritten to {config.results_path}")
    print("\n".join(format_section(result) for result in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
