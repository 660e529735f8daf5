"""Data larger than memory (issue 12): a table several times a memory budget trains to completion with the
process's peak RSS bounded, and the streamed path's rows/s against the in-memory path at a size that fits.

What it runs, each `trainpipe run` in a child process of its own (this script with --child), whose peak resident
memory (`ru_maxrss`) is the figure:
- generated tables (float64 features, a 0/1 label from a logistic score) written row group by row group (never
  whole in this process either) at two sizes N and 2N, `data.streaming: on`, xgboost external memory: peak RSS
  against each table's in-memory size and against a budget of a quarter of it (the table "4x the memory
  limit"); how much the peak grows from N to 2N (a bounded streamed run grows by little: its batches, sample and
  buffers are fixed sizes); the child's RSS right after its imports (what the libraries alone take);
- a smaller table through both paths (`on` and `off`): rows/s of the whole pipeline and of each stage, and the
  ratio streamed / in memory, plus both test AUCs.
RLIMIT_AS is not used: torch, xgboost and glibc reserve far more address space than they touch.

Usage: .venv/bin/python benchmarks/larger_than_memory.py [--quick]; results in
benchmarks/results/larger_than_memory.json. The lead's bench_distributed.py calls `measure(quick)`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "larger_than_memory.json"
COLUMNS, SEED = 40, 0
# (rows of the smaller big table N, rows of the table both paths train on); --rows overrides N
SIZES = {True: (200_000, 100_000), False: (1_000_000, 300_000)}


def generate(path: Path, rows: int, chunk_rows: int = 100_000) -> int:
    """rows × COLUMNS float64 features and a 0/1 label, one row group per chunk; returns the in-memory bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f"f{i:02d}" for i in range(COLUMNS)]
    schema = pa.schema([*(pa.field(n, pa.float64()) for n in names), pa.field("label", pa.int64())])
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for start in range(0, rows, chunk_rows):
            n = min(chunk_rows, rows - start)
            rng = np.random.default_rng([SEED, start])
            X = rng.normal(size=(n, COLUMNS))
            logit = X[:, 0] * X[:, 1] + np.sin(2 * X[:, 2]) + 0.5 * X[:, 3] - 0.3 * X[:, 4] ** 2 + 0.2 * X[:, 5:10].sum(1)
            y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
            arrays = [pa.array(X[:, i]) for i in range(COLUMNS)] + [pa.array(y)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    return rows * (COLUMNS * 8 + 8)


def config(path: Path, store: Path, streaming: str) -> dict:
    return {"name": f"ltm-{streaming}", "task": "binary", "store": str(store), "seed": SEED,
            "data": {"path": str(path), "target": "label", "streaming": streaming},
            "model": {"type": "xgboost", "params": {"n_estimators": 20, "max_depth": 6}},
            "training": {"early_stopping_rounds": 5, "threads": 2}}


def child(config_file: str, out_file: str) -> None:
    """One pipeline run in this process; writes its summary, stage seconds and peak RSS."""
    import yaml

    from trainpipe.config import config_from_dict
    from trainpipe.pipeline.run import run_pipeline
    from trainpipe.store import Store

    import mlflow  # noqa: F401  (imported by the run anyway: counted in the import baseline)
    import xgboost  # noqa: F401

    after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    doc = config_from_dict(yaml.safe_load(Path(config_file).read_text()))
    began = time.perf_counter()
    summary = run_pipeline(doc, Store.locate(doc.store))
    seconds = time.perf_counter() - began
    run_dir = Path(summary["run_dir"])
    stages = {}
    for stage in ("ingest", "validate", "split", "features", "train", "evaluate", "gate", "register"):
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        stages[stage] = round(float(manifest.get("seconds", 0.0)), 2)
    Path(out_file).write_text(json.dumps({
        "status": summary["status"], "seconds": seconds, "stages": stages,
        "test_roc_auc": summary["metrics"]["test"]["roc_auc"],
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "import_rss_bytes": after_imports}))


def run_child(path: Path, folder: Path, streaming: str) -> dict:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(config(path, folder / "store", streaming)))
    out = folder / "result.json"
    proc = subprocess.run([sys.executable, __file__, "--child", str(folder / "pipeline.yaml"), str(out)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if proc.returncode != 0:
        raise RuntimeError(f"the {streaming} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def mib(n: float) -> float:
    return round(n / 2**20, 1)


def streamed(folder: Path, rows: int) -> dict:
    table = generate(folder / f"big-{rows}.parquet", rows)
    run = run_child(folder / f"big-{rows}.parquet", folder / f"big-{rows}", "on")
    (folder / f"big-{rows}.parquet").unlink()
    budget = table / 4
    return {"rows": rows, "columns": COLUMNS, "table_in_memory_mib": mib(table), "memory_budget_mib": mib(budget),
            "peak_rss_mib": mib(run["peak_rss_bytes"]), "import_rss_mib": mib(run["import_rss_bytes"]),
            "peak_rss_over_table": round(run["peak_rss_bytes"] / table, 3),
            "peak_rss_over_budget": round(run["peak_rss_bytes"] / budget, 3),
            "within_budget": run["peak_rss_bytes"] <= budget, "status": run["status"],
            "seconds": round(run["seconds"], 1), "rows_per_s": round(rows / run["seconds"]),
            "stage_seconds": run["stages"], "test_roc_auc": round(run["test_roc_auc"], 4)}


def measure(quick: bool, rows: int | None = None) -> dict:
    big_rows, small_rows = SIZES[quick]
    big_rows = rows or big_rows
    with tempfile.TemporaryDirectory(prefix="ltm-") as tmp:
        folder = Path(tmp)
        sizes = [streamed(folder, big_rows), streamed(folder, 2 * big_rows)]
        generate(folder / "small.parquet", small_rows)
        on = run_child(folder / "small.parquet", folder / "small-on", "on")
        off = run_child(folder / "small.parquet", folder / "small-off", "off")
    stage_ratio = {s: round(off["stages"][s] / on["stages"][s], 2) if on["stages"][s] else None for s in on["stages"]}
    growth = (sizes[1]["peak_rss_mib"] - sizes[0]["peak_rss_mib"]) / (sizes[1]["table_in_memory_mib"]
                                                                      - sizes[0]["table_in_memory_mib"])
    return {
        "quick": quick,
        "larger_than_memory": sizes,
        # MiB of peak RSS per MiB of table from N to 2N rows: ~1 or more if the table were held whole, ~0 if bounded
        "peak_rss_growth_per_table_mib": round(growth, 3),
        "streamed_vs_in_memory": {
            "rows": small_rows, "table_in_memory_mib": mib(small_rows * (COLUMNS * 8 + 8)),
            "streamed_rows_per_s": round(small_rows / on["seconds"]),
            "in_memory_rows_per_s": round(small_rows / off["seconds"]),
            "streamed_over_in_memory": round(off["seconds"] / on["seconds"], 3),
            "peak_rss_mib": {"streamed": mib(on["peak_rss_bytes"]), "in_memory": mib(off["peak_rss_bytes"])},
            "stage_seconds": {"streamed": on["stages"], "in_memory": off["stages"]},
            "stage_speed_streamed_over_in_memory": stage_ratio,
            "test_roc_auc": {"streamed": round(on["test_roc_auc"], 4), "in_memory": round(off["test_roc_auc"], 4)}},
        "machine": {"cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that it runs")
    parser.add_argument("--rows", type=int, help="rows N of the smaller streamed table (the larger has 2N)")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    result = measure(args.quick, args.rows)
    for big in result["larger_than_memory"]:
        print(f"streamed: {big['rows']:,} rows x {big['columns']} = {big['table_in_memory_mib']} MiB in memory; peak RSS "
              f"{big['peak_rss_mib']} MiB ({big['peak_rss_over_table']:.2f}x the table, {big['peak_rss_over_budget']:.2f}x "
              f"a budget of table/4; {big['import_rss_mib']} MiB after imports); {big['rows_per_s']:,} rows/s, "
              f"AUC {big['test_roc_auc']}")
    print(f"peak RSS growth per MiB of table (N -> 2N rows): {result['peak_rss_growth_per_table_mib']}")
    pair = result["streamed_vs_in_memory"]
    print(f"streamed vs in memory at {pair['rows']:,} rows: {pair['streamed_rows_per_s']:,} vs "
          f"{pair['in_memory_rows_per_s']:,} rows/s ({pair['streamed_over_in_memory']:.2f}x); peak RSS "
          f"{pair['peak_rss_mib']}; AUC {pair['test_roc_auc']}")
    print(f"machine: {result['machine']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
