"""Native categoricals against ordinal codes for xgboost and lightgbm, on real tables that packages ship.

Why: trees given ordinal codes split categories as if they were ordered numbers; xgboost (`enable_categorical`)
and LightGBM (`categorical_feature`) can split on sets of categories instead (`features.categorical.encoding:
native`); these figures chose `auto`'s default per family (issue 16.7: native for xgboost, ordinal for LightGBM,
where native measured no better on these tables). This measures both encodings through the real pipeline (ingest .. evaluate,
trainpipe's default model parameters and early stopping), on the same split rows, per table, family and split seed:
test log loss / accuracy (classification) or RMSE (regression).

Tables (real data; a table whose package is not installed is skipped, with the install line):
    ISLP (pip install --no-deps ISLP): Wage (regression on wage; 7 categorical columns), Carseats (regression
    on Sales; ShelveLoc, Urban, US), OJ (binary Purchase; Store7 + store ids), Credit (regression on Balance)
    palmerpenguins (pip install palmerpenguins): penguins (multiclass species; island, sex)
Neither package is a trainpipe dependency; their CSV files are read from the installed package, nothing is
downloaded.

Usage: .venv/bin/python benchmarks/bench_categoricals.py [--seeds 3] [--families xgboost,lightgbm] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_categoricals.json"

# name: (package, file inside the package, task, target, columns to drop, primary metric and whether lower is better)
TABLES = {
    "Wage": ("ISLP", "data/Wage.csv", "regression", "wage", ["logwage"], ("rmse", True)),
    "Carseats": ("ISLP", "data/Carseats.csv", "regression", "Sales", [], ("rmse", True)),
    "OJ": ("ISLP", "data/OJ.csv", "binary", "Purchase", [], ("log_loss", True)),
    "Credit": ("ISLP", "data/Credit.csv", "regression", "Balance", ["ID"], ("rmse", True)),
    "penguins": ("palmerpenguins", "data/penguins.csv", "multiclass", "species", [], ("log_loss", True)),
}
# Store ids in OJ are numbers but name stores: categorical by meaning (coerced to strings).
AS_CATEGORY = {"OJ": ["StoreID", "STORE"]}


def table_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / relative
    return path if path.exists() else None


def prepare(name: str, folder: Path) -> Path | None:
    package, relative, _, _, drop, _ = TABLES[name]
    source = table_file(package, relative)
    if source is None:
        print(f"  {name}: skipped ({package} is not installed: pip install --no-deps {package})", file=sys.stderr)
        return None
    frame = pd.read_csv(source).drop(columns=drop)
    frame = frame.loc[:, ~frame.columns.str.startswith("Unnamed")]
    for column in AS_CATEGORY.get(name, []):
        frame[column] = frame[column].astype(str)
    path = folder / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    return path


def evaluate(path: Path, name: str, family: str, encoding: str, seed: int, store: Path) -> dict:
    from trainpipe.config import config_from_dict
    from trainpipe.pipeline.driver import run_pipeline
    from trainpipe.store import Store

    _, _, task, target, _, _ = TABLES[name]
    config = config_from_dict({
        "name": f"cat-{name}", "task": task, "seed": 0, "store": str(store),
        "data": {"path": str(path), "target": target},
        "split": {"strategy": "random", "validation": 0.2, "test": 0.2, "seed": seed},
        "features": {"categorical": {"encoding": encoding}},
        "model": {"type": family}, "training": {"threads": 1}, "tracking": {"enabled": False}})
    summary = run_pipeline(config, Store.locate(str(store)), until="evaluate")
    metrics = json.loads((Path(summary["run_dir"]) / "evaluate" / "metrics.json").read_text())["test"]
    return {k: metrics[k] for k in ("rmse", "r2", "log_loss", "accuracy", "roc_auc") if k in metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="split seeds per table (each both encodings)")
    parser.add_argument("--families", default="xgboost,lightgbm")
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="one table, one seed, xgboost; results to a temp file")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.families, args.tables = 1, "xgboost", "Carseats"
        if args.out == RESULTS:
            args.out = Path(tempfile.gettempdir()) / "bench_categoricals_quick.json"
    sys.path.insert(0, str(ROOT))

    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_categoricals_") as tmp:
        folder = Path(tmp)
        for name in args.tables.split(","):
            path = prepare(name, folder)
            if path is None:
                continue
            metric, _ = TABLES[name][5]
            for family in args.families.split(","):
                runs: dict[str, list[dict]] = {"ordinal": [], "native": []}
                for seed in range(args.seeds):
                    for encoding in runs:
                        runs[encoding].append(evaluate(path, name, family, encoding, seed, folder / "store"))
                entry = {enc: {k: statistics.mean(r[k] for r in rs) for k in rs[0]} for enc, rs in runs.items()}
                entry["per_seed"] = runs
                entry["metric"] = metric
                entry["native_vs_ordinal"] = entry["native"][metric] / entry["ordinal"][metric]
                entry["native_better_seeds"] = sum(n[metric] < o[metric] for n, o in zip(runs["native"], runs["ordinal"]))
                results[f"{name}/{family}"] = entry
                print(f"  {name:9} {family:9} {metric}: ordinal {entry['ordinal'][metric]:.4f}  native "
                      f"{entry['native'][metric]:.4f}  ratio {entry['native_vs_ordinal']:.3f}", file=sys.stderr,
                      flush=True)
    doc = {"seeds": args.seeds, "tables": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"bench_categoricals: test metric, mean over {args.seeds} split seed(s); ratio native/ordinal "
          "(< 1: native better)")
    print(f"{'table/family':22}{'metric':>10}{'ordinal':>10}{'native':>10}{'ratio':>8}{'native wins':>13}"
          f"{'acc ord':>9}{'acc nat':>9}")
    for key, e in results.items():
        m = e["metric"]
        acc = (f"{e['ordinal']['accuracy']:>9.4f}{e['native']['accuracy']:>9.4f}" if "accuracy" in e["ordinal"] else "")
        print(f"{key:22}{m:>10}{e['ordinal'][m]:>10.4f}{e['native'][m]:>10.4f}{e['native_vs_ordinal']:>8.3f}"
              f"{e['native_better_seeds']:>8}/{args.seeds}{'':4}{acc}")


if __name__ == "__main__":
    main()
