"""Data larger than memory (issue 12): peak resident memory of a streamed run stays flat as the table grows, a table
several times that peak trains to completion, and the streamed path's rows/s against the in-memory path.

What it runs, each `trainpipe run` in a child process of its own (this script with --child):
- generated tables (float64 features, a 0/1 label from a logistic score), written row group by row group (never
  whole in this process either), at 1x, 2x and 4x N rows, `data.streaming: on`, xgboost external memory: the run's
  peak RSS, its peak per stage (ingest ... report), peak RSS / the table's in-memory size, and the growth of the
  peak from N to 4N rows (a bounded run: ~1.0x; a run holding the table: ~4x minus the fixed part);
- torch_mlp streamed at N and 2N rows (the engine's ParquetBatches): the same peak figures;
- unless --quick, one table about 4x the 1x run's peak RSS (the "table 4x the memory it may use") trained to
  completion, its peak reported against the table;
- a smaller table through both paths (`on` and `off`): rows/s of the whole pipeline and of each stage, and the
  ratio streamed / in memory, plus both test AUCs.

How memory is measured: Linux's peak RSS (VmHWM in /proc/self/status) is reset at every stage's start (writing 5
to /proc/self/clear_refs) and read at its end, so each stage gets its own peak and the run's peak is the largest
of them (and of the imports'). RSS counts file pages the process maps (xgboost reads its page cache through mmap);
the kernel can drop those under pressure, so the largest anonymous RSS (RssAnon, sampled every 20 ms) is reported
beside it. No hard limit is set: RLIMIT_AS counts the address space torch, xgboost and glibc reserve but never
touch, and `systemd-run --scope -p MemoryMax=` needs a systemd user bus this machine lacks; the bound is shown by
the measured peak against the table's size.

Usage: .venv/bin/python benchmarks/larger_than_memory.py [--quick] [--rows N]; results in
benchmarks/results/larger_than_memory.json. benchmarks/bench_distributed.py calls `measure(quick)` (part memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "larger_than_memory.json"
COLUMNS, SEED = 40, 0
# (rows N of the smallest streamed table, rows of the table both paths train on); --rows overrides N
SIZES = {True: (100_000, 100_000), False: (1_000_000, 300_000)}
MIB = 2**20


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


MODELS = {"xgboost": {"type": "xgboost", "params": {"n_estimators": 20, "max_depth": 6}},
          "torch_mlp": {"type": "torch_mlp", "params": {"epochs": 2, "hidden_dims": [64, 32], "batch_size": 1024}}}


def config(path: Path, store: Path, streaming: str, model: str = "xgboost") -> dict:
    return {"name": f"ltm-{streaming}-{model}", "task": "binary", "store": str(store), "seed": SEED,
            "data": {"path": str(path), "target": "label", "streaming": streaming},
            "model": MODELS[model], "training": {"early_stopping_rounds": 5, "threads": 2}}


# -- the child: one run, memory per stage ---------------------------------------------------------------------


def _status(*keys: str) -> dict[str, int]:
    """Fields of /proc/self/status in bytes."""
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"^{k}:\s+(\d+) kB", text, re.MULTILINE).group(1)) * 1024  # type: ignore[union-attr]
            for k in keys}


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # 5: reset the peak RSS (VmHWM) to the current RSS
        f.write("5")


class StageMemory:
    """Peak RSS per stage (VmHWM reset at each stage's start) and the largest anonymous RSS sampled in it."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self.outside = _status("VmHWM")["VmHWM"]  # the peak so far: imports and config
        self.largest = 0  # the largest stage peak seen
        self._anon = 0
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self._anon = max(self._anon, _status("RssAnon")["RssAnon"])

    def wrap(self, name: str, runner: Any) -> Any:
        def run(ctx: Any) -> Any:
            self.outside = max(self.outside, _status("VmHWM")["VmHWM"])
            _reset_peak()
            self._anon = _status("RssAnon")["RssAnon"]
            began = time.perf_counter()
            try:
                return runner(ctx)
            finally:
                now = _status("VmHWM", "VmRSS", "RssAnon")
                self.stages[name] = {"peak_rss_mib": mib(now["VmHWM"]),
                                     "peak_anon_mib": mib(max(self._anon, now["RssAnon"])),
                                     "rss_after_mib": mib(now["VmRSS"]), "seconds": round(time.perf_counter() - began, 2)}
                self.largest = max(self.largest, now["VmHWM"])
                _reset_peak()
        return run

    def peak(self) -> int:
        """The process's peak RSS so far: the largest stage peak of every run, or what was between them."""
        return max(self.outside, _status("VmHWM")["VmHWM"], self.largest)


def child(config_file: str, out_file: str) -> None:
    """One pipeline run in this process; writes its summary, peak RSS per stage and overall."""
    import yaml

    from trainpipe.config import config_from_dict
    from trainpipe.pipeline import stages
    from trainpipe.pipeline.driver import run_pipeline
    from trainpipe.store import Store

    import mlflow  # noqa: F401  (imported by the run anyway: counted in the import baseline)
    import xgboost  # noqa: F401

    doc = config_from_dict(yaml.safe_load(Path(config_file).read_text()))
    if doc.model.type == "torch_mlp":
        import torch  # noqa: F401
    after_imports = _status("VmRSS")["VmRSS"]
    memory = StageMemory()
    for name, runner in list(stages.RUNNERS.items()):
        stages.RUNNERS[name] = memory.wrap(name, runner)
    began = time.perf_counter()
    summary = run_pipeline(doc, Store.locate(doc.store))
    seconds = time.perf_counter() - began
    first = dict(memory.stages)
    # a second run in the same store: the data stages come from the cache, drift compares the table with the
    # champion the first run registered (a first run has none: drift is skipped), gate scores the champion
    memory.stages.clear()
    again = run_pipeline(doc, Store.locate(doc.store))
    Path(out_file).write_text(json.dumps({
        "status": summary["status"], "seconds": seconds, "stages": first, "second_run": memory.stages,
        "second_status": again["status"],
        "second_drift": next((s["summary"].get("note") for s in again["stages"] if s["name"] == "drift"), None),
        "test_roc_auc": summary["metrics"]["test"]["roc_auc"], "peak_rss_bytes": memory.peak(),
        "import_rss_bytes": after_imports}))


# -- the parent -------------------------------------------------------------------------------------------------


def run_child(path: Path, folder: Path, streaming: str, model: str = "xgboost") -> dict:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(config(path, folder / "store", streaming, model)))
    out = folder / "result.json"
    proc = subprocess.run([sys.executable, __file__, "--child", str(folder / "pipeline.yaml"), str(out)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if proc.returncode != 0:
        raise RuntimeError(f"the {streaming} {model} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def mib(n: float) -> float:
    return round(n / MIB, 1)


def streamed(folder: Path, rows: int, model: str = "xgboost") -> dict:
    data = folder / f"big-{rows}.parquet"
    table = generate(data, rows)
    run = run_child(data, folder / f"big-{model}-{rows}", "on", model)
    data.unlink()
    shutil.rmtree(folder / f"big-{model}-{rows}", ignore_errors=True)  # its matrices and store: disk for the next
    return {"model": model, "rows": rows, "columns": COLUMNS, "table_in_memory_mib": mib(table),
            "peak_rss_mib": mib(run["peak_rss_bytes"]), "import_rss_mib": mib(run["import_rss_bytes"]),
            "peak_rss_over_table": round(run["peak_rss_bytes"] / table, 3),
            "table_over_peak_rss": round(table / run["peak_rss_bytes"], 2),
            "peak_anon_mib": max(s["peak_anon_mib"] for s in run["stages"].values()),
            "status": run["status"], "seconds": round(run["seconds"], 1), "rows_per_s": round(rows / run["seconds"]),
            "stages": run["stages"], "test_roc_auc": round(run["test_roc_auc"], 4),
            "second_run": run["second_run"], "second_status": run["second_status"], "second_drift": run["second_drift"]}


def growth(sizes: list[dict]) -> dict:
    """How the peak grows from the smallest to the largest table: ratio, and MiB of peak per MiB of table."""
    first, last = sizes[0], sizes[-1]
    return {"rows": [first["rows"], last["rows"]],
            "peak_ratio": round(last["peak_rss_mib"] / first["peak_rss_mib"], 3),
            "peak_mib_per_table_mib": round((last["peak_rss_mib"] - first["peak_rss_mib"])
                                            / (last["table_in_memory_mib"] - first["table_in_memory_mib"]), 3),
            "stage_peak_ratio": {s: round(last["stages"][s]["peak_rss_mib"] / first["stages"][s]["peak_rss_mib"], 3)
                                 for s in first["stages"] if s in last["stages"]}}


def table_4x_peak(peak_mib: float) -> dict:
    """A table 4x `peak_mib` (the 1x run's peak RSS) streamed to the end: its peak against its own size."""
    rows = int(4 * peak_mib * MIB / (COLUMNS * 8 + 8)) + 1
    with tempfile.TemporaryDirectory(prefix="ltm-big-") as tmp:
        free = shutil.disk_usage(tmp).free
        if free < rows * (COLUMNS * 8 + 8) * 2.5:  # the Parquet file, the float32 matrices, xgboost's pages
            return {"skipped": f"{free / 2**30:.1f} GiB free disk is too little for {rows:,} rows"}
        big = streamed(Path(tmp), rows)
    big["table_over_1x_peak"] = round(big["table_in_memory_mib"] / peak_mib, 2)
    return big


def measure(quick: bool, rows: int | None = None, big: bool = True) -> dict:
    """Every figure (`big`: also the table 4x the 1x run's peak, unless quick)."""
    base_rows, small_rows = SIZES[quick]
    base_rows = rows or base_rows
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ltm-") as tmp:
        folder = Path(tmp)
        xgb = [streamed(folder, k * base_rows) for k in (1, 2, 4)]
        mlp = [streamed(folder, k * base_rows, "torch_mlp") for k in (1, 2)]
        result: dict[str, Any] = {"quick": quick, "streamed_xgboost": xgb, "xgboost_growth": growth(xgb),
                                  "streamed_torch_mlp": mlp, "torch_mlp_growth": growth(mlp)}
        if big and not quick:
            result["table_4x_peak"] = table_4x_peak(xgb[0]["peak_rss_mib"])
        generate(folder / "small.parquet", small_rows)
        on = run_child(folder / "small.parquet", folder / "small-on", "on")
        off = run_child(folder / "small.parquet", folder / "small-off", "off")
    seconds = {p: {s: v["seconds"] for s, v in r["stages"].items()} for p, r in (("streamed", on), ("in_memory", off))}
    result["streamed_vs_in_memory"] = {
        "rows": small_rows, "table_in_memory_mib": mib(small_rows * (COLUMNS * 8 + 8)),
        "streamed_rows_per_s": round(small_rows / on["seconds"]),
        "in_memory_rows_per_s": round(small_rows / off["seconds"]),
        "streamed_over_in_memory": round(off["seconds"] / on["seconds"], 3),
        "peak_rss_mib": {"streamed": mib(on["peak_rss_bytes"]), "in_memory": mib(off["peak_rss_bytes"])},
        "stage_seconds": seconds,
        "stage_speed_streamed_over_in_memory": {s: round(seconds["in_memory"][s] / t, 2) if t else None
                                                for s, t in seconds["streamed"].items() if s in seconds["in_memory"]},
        "test_roc_auc": {"streamed": round(on["test_roc_auc"], 4), "in_memory": round(off["test_roc_auc"], 4)}}
    result["hard_limit"] = ("none: RLIMIT_AS counts address space torch/xgboost/glibc reserve but never touch, and "
                            "systemd-run --scope -p MemoryMax= needs a systemd user bus; the bound is the measured peak "
                            "RSS against the table's in-memory size")
    result["machine"] = {"cpus": os.cpu_count(), "load_before": [round(x, 2) for x in load_before],
                         "load_after": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version()}
    return result


def show(result: dict) -> None:
    for key in ("streamed_xgboost", "streamed_torch_mlp"):
        for big in result[key]:
            print(f"{big['model']} streamed: {big['rows']:,} rows x {big['columns']} = {big['table_in_memory_mib']} MiB "
                  f"in memory; peak RSS {big['peak_rss_mib']} MiB ({big['peak_rss_over_table']:.2f}x the table; "
                  f"{big['import_rss_mib']} MiB after imports; anonymous {big['peak_anon_mib']} MiB); "
                  f"{big['rows_per_s']:,} rows/s, AUC {big['test_roc_auc']}")
            print("   peak per stage (MiB): " + ", ".join(f"{s} {v['peak_rss_mib']:.0f}" for s, v in big["stages"].items()))
    for key in ("xgboost_growth", "torch_mlp_growth"):
        g = result[key]
        print(f"{key}: {g['rows'][0]:,} -> {g['rows'][1]:,} rows: peak x{g['peak_ratio']} "
              f"({g['peak_mib_per_table_mib']} MiB of peak per MiB of table)")
    big = result.get("table_4x_peak")
    if big and "rows" in big:
        print(f"table 4x the peak: {big['rows']:,} rows = {big['table_in_memory_mib']} MiB; {big['status']}, peak RSS "
              f"{big['peak_rss_mib']} MiB (table = {big['table_over_peak_rss']}x its own peak), {big['rows_per_s']:,} rows/s")
    pair = result["streamed_vs_in_memory"]
    print(f"streamed vs in memory at {pair['rows']:,} rows: {pair['streamed_rows_per_s']:,} vs "
          f"{pair['in_memory_rows_per_s']:,} rows/s ({pair['streamed_over_in_memory']:.2f}x); peak RSS "
          f"{pair['peak_rss_mib']}; AUC {pair['test_roc_auc']}")
    print(f"machine: {result['machine']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that it runs")
    parser.add_argument("--rows", type=int, help="rows N of the smallest streamed table (then 2N and 4N)")
    parser.add_argument("--no-big", action="store_true", help="without the table 4x the 1x run's peak (the longest run)")
    parser.add_argument("--big-only", type=float, metavar="PEAK_MIB",
                        help="only the table 4x PEAK_MIB (e.g. the 1x run's peak), printed as JSON")
    parser.add_argument("--child", nargs=2, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.big_only:
        print(json.dumps(table_4x_peak(args.big_only), indent=2))
        return
    result = measure(args.quick, args.rows, big=not args.no_big)
    show(result)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
