"""What the report stage and the run monitoring add to a run's wall time (issue 13: at most 3%).

Two pipelines, each run in-process with every stage recomputed (`use_cache=False`), alternately with
monitoring ON (the defaults: drift stage against a champion, report stage, health checks per epoch/round, MLflow's
system-metrics sampler, cost metering, budget polling with a budget far from reached) and OFF (`drift.mode: off`,
`report.enabled: false`, `health.enabled: false`, `system_metrics.enabled: false`, no budget), R times each in the
same process and store, after one warm-up run that registers the champion the ON runs compare against:

    gbdt         1,000,000 rows x 32 numeric features, binary, xgboost hist, 200 rounds, depth 6 (bench_report's run)
    torch        1,000,000 rows x 32 (the same table size), binary, torch_mlp, 3 epochs, batch 1024: the target
    torch_short    200,000 rows x 32, the same torch_mlp run (~1.4 s): shown because the monitoring's cost is
                 mostly fixed per run (drift comparison, report page, sampler start/stop), so it weighs more on a
                 short run; its on - off seconds are printed next to the ratio

Printed: the median wall time of each side and their ratio (ON / OFF), and, measured separately in the same
process, the drift reference summary register writes on every run (it cannot be switched off, so it is in both
sides): its seconds as a share of the OFF run. Cost metering (getrusage + psutil after each stage) is also in
both sides; the budget's per-step poll is in ON only. Overhead = ratio - 1 (+ the reference share).

Usage: .venv/bin/python benchmarks/bench_report_overhead.py [--quick] [--repeats R] [--ablate]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_report_overhead.json"
TARGET = 0.03
THREADS = 2


PARTS = ("drift", "report", "health", "system_metrics", "budget")  # everything ON switches on; OFF has none


def config(kind: str, data: Path, store: Path, on: bool | frozenset[str]):
    """on: True (every part), False (none) or the parts switched on (--ablate: one at a time)."""
    from trainpipe.config import config_from_dict

    parts = frozenset(PARTS) if on is True else frozenset() if on is False else on
    model = ({"type": "xgboost", "params": {"n_estimators": 200, "max_depth": 6, "learning_rate": 0.3,
                                            "tree_method": "hist"}} if kind == "gbdt" else
             {"type": "torch_mlp", "params": {"epochs": 3, "batch_size": 1024, "hidden_dims": [64, 32]}})
    doc = {"name": f"bench-overhead-{kind}", "task": "binary", "seed": 0, "store": str(store),
           "data": {"path": str(data), "target": "label"},
           "split": {"strategy": "random", "validation": 0.15, "test": 0.15, "seed": 0},
           "model": model, "training": {"early_stopping_rounds": None, "threads": THREADS},
           "gates": {"champion": {"bootstrap_resamples": 0}}}
    if "budget" in parts:
        doc["budget"] = {"max_minutes": 10_000}  # polled every step/round, never reached
    if "drift" not in parts:
        doc["drift"] = {"mode": "off"}
    if "report" not in parts:
        doc["report"] = {"enabled": False}
    if "health" not in parts:
        doc["health"] = {"enabled": False}  # the per-epoch/round checks
    if "system_metrics" not in parts:
        doc["system_metrics"] = {"enabled": False}  # MLflow's sampler during train
    return config_from_dict(doc)


def run_once(kind: str, data: Path, store: Path, on: bool | frozenset[str]) -> float:
    from trainpipe.pipeline.driver import run_pipeline
    from trainpipe.store import Store

    cfg = config(kind, data, store, on)
    started = time.perf_counter()
    summary = run_pipeline(cfg, Store.locate(cfg.store), use_cache=False)
    wall = time.perf_counter() - started
    meta = json.loads((store / "runs" / summary["run_id"] / "run.json").read_text())
    STAGES.append({name: stage.get("seconds") or 0.0 for name, stage in meta["stages"].items()})
    return wall


STAGES: list[dict[str, float]] = []  # each run's stage seconds (run.json), in run order


def reference_seconds(data: Path) -> float:
    """register's drift reference: summarize the train split (70% of the rows), sampled to drift.max_rows."""
    import pandas as pd

    from trainpipe.data.drift import DriftConfig, sample_rows, summarize

    frame = pd.read_parquet(data)
    train = frame.iloc[: int(len(frame) * 0.7)]
    started = time.perf_counter()
    summarize(sample_rows(train, DriftConfig().max_rows), "label", "categorical")
    return time.perf_counter() - started


def measure(kind: str, rows: int, repeats: int, folder: Path, ablate: bool = False) -> dict:
    from trainpipe.tools.datasets import numeric_binary

    data = folder / f"{kind}.parquet"
    numeric_binary(rows=rows).to_parquet(data, index=False)
    store = folder / f"store-{kind}"
    run_once(kind, data, store, on=True)  # warm-up: imports, the packed plotly.js, v1 becomes the champion
    sides: dict[str, bool | frozenset[str]] = {"off": False, "on": True}
    if ablate:  # each part alone against OFF: its share of the overhead
        sides.update({part: frozenset({part}) for part in PARTS})
    times: dict[str, list[float]] = {side: [] for side in sides}
    stages: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for i in range(repeats):
        for side in (list(sides) if i % 2 == 0 else list(reversed(sides))):  # alternate: drift in the load
            times[side].append(run_once(kind, data, store, on=sides[side]))
            stages[side].append(STAGES[-1])
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    reference = statistics.median(reference_seconds(data) for _ in range(3))
    result = {"rows": rows, "on_s": times["on"], "off_s": times["off"], "median_on_s": on, "median_off_s": off,
              "on_minus_off_s": on - off, "ratio": on / off, "reference_summary_s": reference,
              "reference_share": reference / off, "overhead": on / off - 1 + reference / off}
    # The same cost from the stage timers, less noisy than two wall medians: the stages only ON has, plus the
    # train stage's median difference (health checks, sampler, budget polls run inside it)
    only_on = statistics.median(st.get("drift", 0.0) + st.get("report", 0.0) for st in stages["on"])
    train = {side: statistics.median(st["train"] for st in stages[side]) for side in ("on", "off")}
    result["stage_accounting"] = {"drift_plus_report_s": only_on, "train_on_s": train["on"], "train_off_s": train["off"],
                                  "overhead": (only_on + train["on"] - train["off"] + reference) / off}
    if ablate:
        result["alone"] = {part: {"times_s": times[part], "ratio": statistics.median(times[part]) / off}
                           for part in PARTS}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small tables: checks that the benchmark runs")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--ablate", action="store_true", help="also each part alone against OFF (5 more sides)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = ({"gbdt": 20_000, "torch": 10_000, "torch_short": 5_000} if args.quick else
             {"gbdt": 1_000_000, "torch": 1_000_000, "torch_short": 200_000})
    results: dict = {"quick": args.quick, "repeats": repeats, "target": TARGET, "load": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, rows in sizes.items():
            results[kind] = measure(kind, rows, repeats, Path(tmp), args.ablate)
            r = results[kind]
            print(f"{kind:11s} {rows:>9,} rows  off {r['median_off_s']:7.2f} s  on {r['median_on_s']:7.2f} s  "
                  f"(+{r['on_minus_off_s']:.3f} s)  "
                  f"ratio on/off {r['ratio']:.4f}  + drift reference {r['reference_summary_s']:.3f} s "
                  f"({r['reference_share']:.2%})  overhead {r['overhead']:+.2%}  "
                  f"{'PASS' if r['overhead'] <= TARGET else 'MISS'} (target {TARGET:.0%})", flush=True)
            a = r["stage_accounting"]
            print(f"    by stage timers: drift + report {a['drift_plus_report_s']:.3f} s, train on/off "
                  f"{a['train_on_s']:.2f}/{a['train_off_s']:.2f} s, + reference = {a['overhead']:+.2%}", flush=True)
            for part, alone in r.get("alone", {}).items():
                print(f"    {part:15s} alone: ratio {alone['ratio']:.4f}", flush=True)
    results["load_after"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")  # "quick": true marks a run that only checked it works


if __name__ == "__main__":
    main()
