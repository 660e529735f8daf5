"""Report cost benchmark: writing a run's HTML report against the pipeline run it describes.

Why: the report stage may add at most a small share of a pipeline's wall time (issue 13: report plus
monitoring ≤ 3% of the 1M-row GBDT pipeline; this benchmark holds the report to 2%, leaving 1% for
monitoring). Measured here, in one process as the report stage will run:

    1,000,000 rows x 32 numeric features, binary, xgboost hist, 200 rounds, depth 6 (bench_skeleton's run):
    the in-process pipeline's wall time, then `write_report` on its run folder in the same process
    (warm: the stage's situation), without and with the MLflow look-up; and `trainpipe report` in a
    fresh process (cold: imports included), which is a command a person runs, not part of a run.

Usage: .venv/bin/python benchmarks/bench_report.py [--rows N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_report.json"
TARGET = 0.02  # report seconds / pipeline seconds
THREADS = 2


def pipeline_config(data: Path, store: Path):
    from trainpipe.config import config_from_dict

    return config_from_dict({
        "name": "bench-report", "task": "binary", "seed": 0, "store": str(store),
        "data": {"path": str(data), "target": "label"},
        "split": {"strategy": "random", "validation": 0.15, "test": 0.15, "seed": 0},
        "model": {"type": "xgboost", "params": {"n_estimators": 200, "max_depth": 6, "learning_rate": 0.3,
                                                  "tree_method": "hist"}},
        "training": {"early_stopping_rounds": None, "threads": THREADS}})


def median_seconds(fn, repeats: int) -> tuple[float, dict]:
    times, doc = [], {}
    for _ in range(repeats):
        started = time.perf_counter()
        doc = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), doc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

    from trainpipe.tools.datasets import numeric_binary
    from trainpipe.pipeline.driver import run_pipeline
    from trainpipe.reports.build import write_report
    from trainpipe.reports.tracked import this_process
    from trainpipe.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "data.parquet"
        numeric_binary(rows=args.rows).to_parquet(data, index=False)
        config = pipeline_config(data, folder / "store")
        started = time.perf_counter()
        summary = run_pipeline(config, Store.locate(config.store), use_cache=False)
        pipeline_s = time.perf_counter() - started
        run_dir = Path(summary["run_dir"])

        first_s, _ = median_seconds(lambda: write_report(run_dir, folder / "first.html", tracking=False, strict=True), 1)
        warm_s, doc = median_seconds(lambda: write_report(run_dir, folder / "warm.html", tracking=False, strict=True),
                                     args.repeats)
        tracked_s, _ = median_seconds(lambda: write_report(run_dir, folder / "tracked.html", strict=True), args.repeats)
        process_s, _ = median_seconds(lambda: write_report(run_dir, folder / "process.html", tracked=this_process(),
                                                           strict=True), args.repeats)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "trainpipe", "report", summary["run_id"], "--store", str(folder / "store"),
                        "--out", str(folder / "cold.html")], check=True, capture_output=True)
        cold_s = time.perf_counter() - started

    result = {"rows": args.rows, "pipeline_s": pipeline_s, "report_first_s": first_s, "report_warm_s": warm_s,
              "report_with_mlflow_s": tracked_s, "report_this_process_s": process_s, "cli_cold_s": cold_s, "report_bytes": doc["bytes"],
              "figures": doc["figures"], "ratio_first": first_s / pipeline_s, "ratio_with_mlflow": tracked_s / pipeline_s,
              "target_ratio": TARGET}
    result["verdict"] = "PASS" if max(first_s, tracked_s) / pipeline_s <= TARGET else "MISS"
    print(f"bench_report: {args.rows:,} rows, xgboost 200 rounds; pipeline {pipeline_s:.2f} s in-process")
    print(f"  report, first in the pipeline's process  {first_s:.3f} s  ratio {result['ratio_first']:.4f}")
    print(f"  report, again (median of {args.repeats})          {warm_s:.3f} s")
    print(f"  report with the MLflow look-up         {tracked_s:.3f} s  ratio {result['ratio_with_mlflow']:.4f}")
    print(f"  report with this process's environment {process_s:.3f} s (median of {args.repeats})")
    print(f"  `trainpipe report` in a fresh process  {cold_s:.2f} s (imports included; not part of a run)")
    print(f"  page {doc['bytes'] / 1e6:.2f} MB, {doc['figures']} plots; target ratio <= {TARGET}: {result['verdict']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
