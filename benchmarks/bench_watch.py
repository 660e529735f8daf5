"""What watching a fit adds to training: the health checks and live.json per epoch/round (stages/watching.py).

Why: issue 13 allows report + monitoring together ≤ 3% of the wall time of a GBDT pipeline and of a torch_mlp
run. Here the per-iteration part alone, as ratios against the same fit without a watcher, in the same run:
    xgboost   ROWS × 32 float32 features, ROUNDS rounds (train metrics on: the loss the stall check reads)
    torch_mlp ROWS × 32, EPOCHS epochs
Each configuration is fitted alternately with and without `FitContext.watch` (the real watcher: HealthMonitor +
LiveFile into a temporary run folder); the median of the repeats is compared. Also the process CPU time, which
the shared machine disturbs less than the wall clock. The system-metrics sampler's own cost is measured by
bench_monitoring.py (9.3 ms of CPU per sample, 10 s apart by default).

Usage: .venv/bin/python benchmarks/bench_watch.py [--quick] [--rows N] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_watch.json"


def data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 32)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + rng.normal(scale=0.5, size=rows) > 0).astype(np.float32)
    return X, y


def watcher(run_dir: Path):
    """FitContext.watch exactly as the train stage builds it (StageWatch.fit_watch), minus the MLflow run."""
    from trainpipe.monitoring.health import HealthConfig
    from trainpipe.stages.watching import StageWatch

    ctx = SimpleNamespace(config=SimpleNamespace(health=HealthConfig()), run_dir=run_dir, run_id="bench",
                          progress=False, emit=lambda event: None)
    return StageWatch(ctx, "train").fit_watch()  # type: ignore[arg-type]


def measure(fit, repeats: int) -> dict:
    """Alternate plain and watched fits; medians of wall and CPU seconds, and their ratios."""
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "watched": []}
    fit(False)  # warm-up: imports, thread pools
    for _ in range(repeats):
        for mode in ("plain", "watched"):
            wall, cpu = time.perf_counter(), time.process_time()
            fit(mode == "watched")
            times[mode].append((time.perf_counter() - wall, time.process_time() - cpu))
    row = {f"{mode}_{kind}_s": round(statistics.median(t[i] for t in times[mode]), 4)
           for mode in times for i, kind in enumerate(("wall", "cpu"))}
    row["wall_ratio"] = round(row["watched_wall_s"] / row["plain_wall_s"], 4)
    row["cpu_ratio"] = round(row["watched_cpu_s"] / row["plain_cpu_s"], 4)
    return row


def bench_xgboost(rows: int, rounds: int, repeats: int, run_dir: Path) -> dict:
    from trainpipe.models import ModelConfig, build_family
    from trainpipe.models.base import FitContext

    X, y = data(rows)
    cut = int(rows * 0.8)
    threads = os.cpu_count() or 1

    def fit(watched: bool) -> None:
        model = build_family(ModelConfig(type="xgboost", params={"n_estimators": rounds, "max_depth": 6}),
                             "binary", 2, 0, threads)
        model.fit(X[:cut], y[:cut], X[cut:], y[cut:], train_metrics=True,
                  context=FitContext(watch=watcher(run_dir) if watched else None))

    return {"rows": rows, "rounds": rounds, **measure(fit, repeats)}


def bench_torch(rows: int, epochs: int, repeats: int, run_dir: Path) -> dict:
    from trainpipe.models import ModelConfig, build_family
    from trainpipe.models.base import FitContext

    X, y = data(rows, seed=1)
    cut = int(rows * 0.8)

    def fit(watched: bool) -> None:
        model = build_family(ModelConfig(type="torch_mlp", params={"epochs": epochs, "batch_size": 1024,
                                                                   "hidden_dims": [64, 32]}), "binary", 2, 0, 1)
        model.fit(X[:cut], y[:cut], X[cut:], y[cut:], context=FitContext(watch=watcher(run_dir) if watched else None))

    return {"rows": rows, "epochs": epochs, **measure(fit, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: check that it runs")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    rows = args.rows or (20_000 if args.quick else 200_000)
    repeats = args.repeats or (2 if args.quick else 3)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder)
        results = {
            "xgboost": bench_xgboost(rows, 50 if args.quick else 200, repeats, run_dir),
            "torch_mlp": bench_torch(rows, 3 if args.quick else 10, repeats, run_dir),
        }
    results["load_average"] = os.getloadavg()
    results["quick"] = args.quick
    for name in ("xgboost", "torch_mlp"):
        r = results[name]
        print(f"{name:10s} watched/plain  wall {r['wall_ratio']:.3f}  cpu {r['cpu_ratio']:.3f}  "
              f"(plain {r['plain_wall_s']:.2f} s wall, {r['plain_cpu_s']:.2f} s cpu)")
    print(f"load average {results['load_average']}")
    if not args.quick:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
