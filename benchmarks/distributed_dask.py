"""XGBoost on a Dask LocalCluster against the same fit in one process (issue 12), one part of
benchmarks/bench_distributed.py (`measure(quick)`), runnable alone.

Both sides go through trainpipe's own family (`XGBoostFamily.fit`), the second with
`training.distributed.dask` pointing at a LocalCluster started once beforehand, so the figures are:

    cluster_start_s   LocalCluster(n_workers, threads_per_worker=1) up and answering (paid once per train stage)
    one_process_s     fit in this process with n_workers threads (the same cores as the cluster)
    one_process_one_thread_s  the same with one thread: on a crowded CPU, OpenMP's synchronised threads can
                      lose more to waiting than they gain, which makes the figures above hard to read
    dask_s            fit on the cluster: rows scattered to the workers, DaskQuantileDMatrix, train, booster back
    speedup           one_process_s / dask_s (> 1: Dask faster), and the same with the cluster start included

The data are generated (N rows x 32 float32 features, a noisy linear label), split 90/10 for validation, the
same rounds on both sides (no early stopping). Both use the same total cores, so on a 2-core machine Dask can
only lose (it adds scattering, a distributed sketch and an all-reduce per round): its point is memory and
machines beyond one, not speed on one machine.

Usage: .venv/bin/python benchmarks/distributed_dask.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "distributed_dask.json"
FEATURES = 32


def make_data(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, FEATURES), dtype=np.float32)
    logit = X @ rng.standard_normal(FEATURES).astype(np.float32) + rng.standard_normal(rows).astype(np.float32)
    y = (logit > 0).astype(np.float32)
    cut = int(rows * 0.9)
    return {"X": X[:cut], "y": y[:cut], "X_val": X[cut:], "y_val": y[cut:]}


def fit_seconds(data: dict[str, np.ndarray], params: dict, threads: int, context: Any) -> tuple[float, float]:
    """(seconds, validation AUC) of one XGBoostFamily fit."""
    from sklearn.metrics import roc_auc_score

    from trainpipe.models.gbdt import XGBoostFamily

    model = XGBoostFamily("binary", params, 2, 0, threads)
    began = time.perf_counter()
    model.fit(data["X"], data["y"], data["X_val"], data["y_val"], early_stopping_rounds=None, context=context)
    seconds = time.perf_counter() - began
    return seconds, float(roc_auc_score(data["y_val"], model.predict_proba(data["X_val"])[:, 1]))


def measure(quick: bool) -> dict:
    """Dask vs one process for xgboost at 1M rows (quick: 50k rows, 10 rounds); cluster start apart."""
    from distributed import LocalCluster

    from trainpipe.engine.config import DaskConfig, DistributedConfig
    from trainpipe.models.base import FitContext

    rows, rounds = (50_000, 10) if quick else (1_000_000, 50)
    workers = max(2, min(4, os.cpu_count() or 2))
    params = {"n_estimators": rounds, "max_depth": 6, "tree_method": "hist"}
    data = make_data(rows)
    load_before = os.getloadavg()

    warm_up = make_data(2_000, seed=1), {**params, "n_estimators": 2}  # imports and first-call costs, untimed
    fit_seconds(*warm_up, workers, None)
    one_s, one_auc = fit_seconds(data, params, workers, None)
    one_thread_s, _ = fit_seconds(data, params, 1, None)  # shows what OpenMP threads cost on a crowded CPU
    began = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=50)
    try:
        start_s = time.perf_counter() - began
        context = FitContext(distributed=DistributedConfig(dask=DaskConfig(cluster=cluster.scheduler_address)))
        fit_seconds(*warm_up, workers, context)  # the workers import xgboost
        dask_s, dask_auc = fit_seconds(data, params, workers, context)
    finally:
        cluster.close()
    return {
        "rows": rows, "features": FEATURES, "rounds": rounds, "workers": workers, "threads_one_process": workers,
        "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "cluster_start_s": round(start_s, 2), "one_process_s": round(one_s, 2),
        "one_process_one_thread_s": round(one_thread_s, 2), "dask_s": round(dask_s, 2),
        "speedup": round(one_s / dask_s, 3), "speedup_with_cluster_start": round(one_s / (dask_s + start_s), 3),
        "validation_auc": {"one_process": round(one_auc, 5), "dask": round(dask_auc, 5)},
        "note": "same cores on both sides; Dask's gain is memory and more machines, not speed on one machine",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50k rows, 10 rounds: checks that it runs")
    args = parser.parse_args()
    result = measure(args.quick)
    print(f"xgboost {result['rows']:,} rows x {result['features']}, {result['rounds']} rounds, "
          f"{result['workers']} workers vs {result['threads_one_process']} threads (load {result['load_average_before'][0]:.1f})")
    print(f"  cluster start   {result['cluster_start_s']:8.2f} s")
    print(f"  one process     {result['one_process_s']:8.2f} s   AUC {result['validation_auc']['one_process']}")
    print(f"  one process, 1 thread {result['one_process_one_thread_s']:8.2f} s")
    print(f"  dask            {result['dask_s']:8.2f} s   AUC {result['validation_auc']['dask']}")
    print(f"  speed-up (one process / dask) {result['speedup']:.2f}x, with the cluster start "
          f"{result['speedup_with_cluster_start']:.2f}x")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
