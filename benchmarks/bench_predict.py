"""Batch predict throughput: `trainpipe predict` against calling the raw model on a preprocessed matrix.

Why: the packaged pyfunc adds preprocessing (the fitted ColumnTransformer on raw columns), input checks,
chunked reading and Parquet writing around the model. The issue's target: predict throughput on 1M raw
rows >= 0.8x the raw model on the already-preprocessed matrix. Both sides are measured in this process,
in the same run, median of R repeats alternating the sides; printed:

    raw        model.predict_proba(X_preprocessed)                (the model alone; X prepared untimed): the
               baseline of the issue's target
    script     what a user's own script does to get the same output from the same in-memory frame: the fitted
               preprocessor's own transform (sklearn's ColumnTransformer), cast to float32, the model, the labels
               by threshold/argmax, a DataFrame of the same columns on the frame's index
    script_file  the same script from the Parquet file to a Parquet file (pd.read_parquet ... to_parquet)
    pyfunc     mlflow.pyfunc.load_model(package).predict(raw DataFrame in memory): the wrapped model users
               load, MLflow's schema enforcement included (preprocessing + model)
    file       trainpipe.registry.predict.predict_file(parquet -> parquet): read, check, predict, write; the
               time after the package is resolved, verified and loaded (the path `trainpipe predict` takes)
    unwrapped  PackagedModel.predict without MLflow's wrapper (what the file path calls per chunk; for reference)
    pyfunc_unfolded, file_unfolded  (--compare-unfolded, torch_mlp) the same two paths with the fold switched off
               (models/tabular_fold.py): the matrix from features.transform, then the family's predict_proba
    load       seconds to load the wrapped pyfunc, and the file path's resolve + verify + load, reported apart

The target (>= 0.8x) is judged against raw (the model alone, stricter); the ratios to the user's script are printed
beside it: pyfunc/script and file/script_file compare the same input format, preprocessing and output.

Families: xgboost (200 trees, depth 6) and torch_mlp ([256, 128, 64]); each trained on 100k rows first.

Usage: .venv/bin/python benchmarks/bench_predict.py [--rows 1000000] [--repeats 3] [--families xgboost,torch_mlp]
       [--quick] [--compare-unfolded] [--out FILE]
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


def timed(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def alternating_medians(sides: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each side over `repeats` rounds, the order rotated every round (a busy machine's slow
    moment is not always one side's). A side returns None to be timed from outside, or its own seconds."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            began = time.perf_counter()
            own = sides[name]()
            times[name].append(own if own is not None else time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()}


def folded_side(wrapped, folded: bool, side):
    """`side` with torch_mlp's fold on or off: in the loaded pyfunc, and for the packages the file path loads."""
    from trainpipe.models.tabular import TorchMLPFamily

    inner = wrapped.unwrap_python_model()
    fold = getattr(inner, "folded", None)
    original = TorchMLPFamily.fold_preprocessor

    def run():
        if not folded:
            inner.folded = None
            TorchMLPFamily.fold_preprocessor = lambda self, preprocessor: None
        try:
            return side()
        finally:
            inner.folded = fold
            TorchMLPFamily.fold_preprocessor = original
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", default="xgboost,torch_mlp")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--compare-unfolded", action="store_true", help="torch_mlp: also time pyfunc and file with "
                        "the preprocessor and embeddings not folded (the path before models/tabular_fold.py), alternated "
                        "with the rest")
    parser.add_argument("--quick", action="store_true", help="50k rows, 10k to train, one repeat, results to a "
                        "temporary file: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.train_rows, args.repeats = 50_000, 10_000, 1
        if args.out == RESULTS:
            args.out = Path(tempfile.gettempdir()) / "bench_predict_quick.json"

    import os

    import numpy as np
    import pandas as pd

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from trainpipe.config import config_from_dict
    from trainpipe.data.features import transform
    from trainpipe.tools.datasets import synthetic_churn
    from trainpipe.pipeline.driver import run_pipeline
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
        import warnings

        import mlflow.pyfunc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            began = time.perf_counter()
            wrapped = mlflow.pyfunc.load_model(str(package))
            load_wrapped = time.perf_counter() - began
        model = load_packaged(package)
        X = transform(model.preprocessor, big[model.meta["input_columns"]])  # untimed: the raw side's input
        store = Store.locate(config.store)
        file_total: list[float] = []

        def file_side(totals: list[float]):
            def run() -> float:
                began = time.perf_counter()
                report = predict_file(summary["run_id"], str(work / "big.parquet"), str(work / "out.parquet"), store)
                totals.append(time.perf_counter() - began)
                return report["seconds"]  # after resolve + verify + load
            return run

        inputs = big[model.meta["input_columns"]]

        def untimed_result(fn):  # the side is timed from outside: its result is dropped
            return lambda: (fn(), None)[1]

        def script(frame):
            """A user's own script: the fitted preprocessor and model as the libraries give them, same output."""
            scores = model.model.predict_proba(np.ascontiguousarray(model.preprocessor.transform(frame), dtype=np.float32))
            classes = model.meta["classes"]
            codes = (scores[:, 1] >= model.meta["threshold"]).astype(np.int64) if len(classes) == 2 else scores.argmax(1)
            out = {"prediction": np.asarray(classes, dtype=object)[codes]}
            out.update({f"proba_{c}": scores[:, i] for i, c in enumerate(classes)})
            return pd.DataFrame(out, index=frame.index)

        def script_file():
            frame = pd.read_parquet(work / "big.parquet")
            script(frame).assign(**{"customer_id": frame["customer_id"]})[
                ["customer_id", *predict_columns]].to_parquet(work / "out_script.parquet", index=False)

        predict_columns = list(model.predict(None, inputs.iloc[:2]).columns)
        sides = {"raw": untimed_result(lambda: model.model.predict_proba(X)),
                 "pyfunc": folded_side(wrapped, True, untimed_result(lambda: wrapped.predict(inputs))),
                 "file": folded_side(wrapped, True, file_side(file_total)),
                 "unwrapped": untimed_result(lambda: model.predict(None, inputs)),
                 "script": untimed_result(lambda: script(inputs)),
                 "script_file": untimed_result(script_file)}
        if args.compare_unfolded and family == "torch_mlp":
            sides["pyfunc_unfolded"] = folded_side(wrapped, False, untimed_result(lambda: wrapped.predict(inputs)))
            sides["file_unfolded"] = folded_side(wrapped, False, file_side([]))
        seconds = alternating_medians(sides, args.repeats)
        file_load = statistics.median(file_total) - seconds["file"]
        result = {"rows": args.rows, "params": PARAMS[family], "repeats": args.repeats,
                  "rows_per_s": {side: args.rows / t for side, t in seconds.items()}, "seconds": seconds,
                  "load_seconds": {"pyfunc": load_wrapped, "file_resolve_verify_load": file_load},
                  "ratio_to_raw": {side: seconds["raw"] / t for side, t in seconds.items() if side != "raw"},
                  "ratio_to_script": {"pyfunc": seconds["script"] / seconds["pyfunc"],
                                      "file": seconds["script_file"] / seconds["file"]},
                  "target": TARGET}
        if "pyfunc_unfolded" in seconds:
            result["fold_speedup"] = {side: seconds[f"{side}_unfolded"] / seconds[side] for side in ("pyfunc", "file")}
        results[family] = result
        print(f"{family} ({PARAMS[family]}), {args.rows:,} rows, median of {args.repeats}")
        for side in seconds:
            print(f"  {side:>9}: {seconds[side]:7.3f} s  {result['rows_per_s'][side]:>12,.0f} rows/s"
                  + (f"  ratio to raw {result['ratio_to_raw'][side]:.2f}" if side != "raw" else ""))
        print(f"  load: wrapped pyfunc {load_wrapped:.2f} s; file path resolve + verify + load {file_load:.2f} s "
              "(not in the ratios)")
        for side in ("pyfunc", "file"):
            verdict = "meets" if result["ratio_to_raw"][side] >= TARGET else "MISSES"
            print(f"  {side}/raw {result['ratio_to_raw'][side]:.2f} {verdict} the {TARGET}x target (the model alone)")
        print(f"  against a user's own script (same input, preprocessing, output): pyfunc/script "
              f"{result['ratio_to_script']['pyfunc']:.2f}, file/script_file {result['ratio_to_script']['file']:.2f}")
        if "fold_speedup" in result:
            print(f"  the fold (models/tabular_fold.py): pyfunc {result['fold_speedup']['pyfunc']:.2f}x, file "
                  f"{result['fold_speedup']['file']:.2f}x faster than unfolded")
    result = {"rows": args.rows, "families": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
