"""Batch predict throughput: `trainpipe predict` against calling the raw model on a preprocessed matrix.

Why: the packaged pyfunc adds preprocessing (the fitted ColumnTransformer on raw columns), input checks,
chunked reading and Parquet writing around the model. The issue's target: predict throughput on 1M raw
rows >= 0.8x the raw model on the already-preprocessed matrix. Both sides are measured in this process,
in the same run, median of R repeats; three numbers are printed:

    raw     model.predict_proba(X_preprocessed)             (the model alone; X prepared untimed)
    pyfunc  PackagedModel.predict(raw DataFrame in memory)  (preprocessing + model)
    file    trainpipe.registry.predict.predict_file(parquet -> parquet)  (read, check, predict, write)

Families: xgboost (200 trees, depth 6) and torch_mlp ([256, 128, 64]); each trained on 100k rows first.

Usage: .venv/bin/python benchmarks/bench_predict.py [--rows 1000000] [--repeats 3] [--families xgboost,torch_mlp]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_predict.json"
TARGET = 0.8
PARAMS = {"xgboost": {"n_estimators": 200, "max_depth": 6},
          "torch_mlp": {"hidden_dims": [256, 128, 64], "epochs": 2, "batch_size": 1024}}


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", default="xgboost,torch_mlp")
    args = parser.parse_args()

    from trainpipe.config import config_from_dict
    from trainpipe.data.features import transform
    from trainpipe.tools.datasets import synthetic_churn
    from trainpipe.pipeline.run import run_pipeline
    from trainpipe.registry.predict import load_packaged, predict_file
    from trainpipe.store import Store

    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    synthetic_churn(rows=args.train_rows, seed=1).to_parquet(work / "train.parquet", index=False)
    big = synthetic_churn(rows=args.rows, seed=2)
    big.to_parquet(work / "big.parquet", index=False, row_group_size=200_000)
    results = {}
    for family in args.families.split(","):
        doc = {"name": f"bench-{family}", "task": "binary", "store": str(work / "store"), "tracking": {"enabled": False},
               "data": {"path": str(work / "train.parquet"), "target": "churn", "id_column": "customer_id"},
               "model": {"type": family, "params": PARAMS[family]}, "training": {"early_stopping_rounds": None}}
        config = config_from_dict(doc)
        summary = run_pipeline(config, Store.locate(config.store))
        package = Path(summary["run_dir"]) / "register" / "model"
        model = load_packaged(package)
        X = transform(model.preprocessor, big[model.meta["input_columns"]])  # untimed: the raw side's input

        raw = median_seconds(lambda: model.model.predict_proba(X), args.repeats)
        pyfunc = median_seconds(lambda: model.predict(None, big), args.repeats)
        store = Store.locate(config.store)
        file = median_seconds(lambda: predict_file(summary["run_id"], str(work / "big.parquet"),
                                                   str(work / "out.parquet"), store), args.repeats)
        result = {"rows": args.rows, "params": PARAMS[family],
                  "rows_per_s": {"raw": args.rows / raw, "pyfunc": args.rows / pyfunc, "file": args.rows / file},
                  "seconds": {"raw": raw, "pyfunc": pyfunc, "file": file},
                  "ratio_to_raw": {"pyfunc": raw / pyfunc, "file": raw / file}, "target": TARGET}
        results[family] = result
        print(f"{family} ({PARAMS[family]})")
        for side in ("raw", "pyfunc", "file"):
            print(f"  {side:>7}: {result['seconds'][side]:7.3f} s  {result['rows_per_s'][side]:>12,.0f} rows/s"
                  + (f"  ratio to raw {result['ratio_to_raw'][side]:.2f}" if side != "raw" else ""))
        for side in ("pyfunc", "file"):
            verdict = "meets" if result["ratio_to_raw"][side] >= TARGET else "MISSES"
            print(f"  {side}/raw {result['ratio_to_raw'][side]:.2f} {verdict} the {TARGET}x target")
    result = {"rows": args.rows, "families": results}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
