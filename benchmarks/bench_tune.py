"""Tuning benchmark: does TPE + hyperband pruning find good parameters in less compute, and what does
trainpipe's tuning machinery (RDB storage with heartbeats, MLflow trial runs, budgets) cost per trial?

Measured in one run, on xgboost with its default search space, validation log loss (lower is better):

- quality vs compute, on a fixed generated table (make_data) and scikit-learn's bundled breast-cancer set:
  TPE (multivariate) + hyperband pruning against random search without pruning, the same trial budget,
  3 seeds each. Compute = the sum of the trials' own wall times. Reports the best-so-far curve, the share
  of random's total compute that TPE+hyperband needs to reach random's final best (target ≤ 50%) and the
  share of TPE+hyperband trials pruned (target ≥ 30%);
- per-trial overhead: `run_worker` (what `trainpipe tune` runs: SQLite storage with heartbeats, per-trial
  attributes, MLflow nested runs, budget callbacks) against a bare in-memory `study.optimize` with the same
  objective, sampler and parameters (target ≤ 10%), alternating repeats.

Usage: .venv/bin/python benchmarks/bench_tune.py [--trials 30] [--rows 8000] [--overhead-trials 10] [--repeats 6]
(~5 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

from trainpipe.models.gbdt import XGBoostFamily
from trainpipe.tuning import objective as objective_module
from trainpipe.tuning.config import TuningConfig
from trainpipe.tuning.objective import ObjectiveSettings, TrialData, make_objective
from trainpipe.tuning.space import parse_space
from trainpipe.tuning.study import make_pruner, make_sampler

RESULTS = Path(__file__).resolve().parent / "results" / "bench_tune.json"
FIT_SECONDS = [0.0]  # time inside model.fit, summed over one optimize call (both sides use the same objective)


def _timed_fit(fit):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fit(*args, **kwargs)
        finally:
            FIT_SECONDS[0] += time.perf_counter() - started
    return timed


objective_module._fit = _timed_fit(objective_module._fit)
SEEDS = (0, 1, 2)
METHODS = {"tpe_hyperband": {"sampler": {"type": "tpe"}, "pruner": {"type": "hyperband"}},  # trainpipe's defaults
           "random": {"sampler": {"type": "random"}, "pruner": {"type": "none"}},
           "tpe": {"sampler": {"type": "tpe"}, "pruner": {"type": "none"}}}  # diagnostic: TPE alone, no pruning
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_data(rows: int, seed: int = 0) -> TrialData:
    """A fixed non-linear binary problem with noise features: depth and regularisation matter."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 20)).astype(np.float32)
    logit = (X[:, 0] * X[:, 1] + np.sin(2 * X[:, 2]) + 0.8 * X[:, 3] - 0.5 * X[:, 4] ** 2 + 0.3 * X[:, 5:9].sum(1)
             + 0.5 * (X[:, 9] > 0.5) * X[:, 10])
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    cut = int(rows * 0.75)
    return TrialData(X[:cut], y[:cut], X[cut:], y[cut:])


def bundled_data() -> TrialData:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X.astype(np.float32), y, test_size=0.3, random_state=0,
                                                      stratify=y)
    return TrialData(X_train, y_train, X_val, y_val)


def settings(method: str, seed: int, rounds: int) -> tuple[ObjectiveSettings, TuningConfig]:
    tuning = TuningConfig(**METHODS[method])
    return ObjectiveSettings(
        task="binary", family="xgboost", base_params={"n_estimators": rounds}, estimator=None,
        space=parse_space(XGBoostFamily.default_search_space("binary")), metric="log_loss", direction="minimize",
        latency_objective=False, seed=seed, threads=1, early_stopping_rounds=30, n_classes=2, categorical=None,
        pruner=tuning.pruner.model_dump()), tuning


def run_study(data: TrialData, method: str, seed: int, trials: int, rounds: int) -> dict:
    objective_settings, tuning = settings(method, seed, rounds)
    study = optuna.create_study(direction="minimize", pruner=make_pruner(tuning), study_name=f"{method}-{seed}",
                                sampler=make_sampler(tuning, objective_settings.space, seed))  # named: hyperband
    # assigns brackets by a hash of study name and trial number, so an unnamed study would not repeat
    study.optimize(make_objective(objective_settings, data), n_trials=trials)
    compute, best, curve = 0.0, float("inf"), []
    for trial in study.trials:
        compute += trial.user_attrs["trainpipe"]["duration_s"]
        if trial.state.name == "COMPLETE":
            best = min(best, trial.value)
        curve.append((round(compute, 4), best))
    pruned = sum(t.state.name == "PRUNED" for t in study.trials)
    return {"curve": curve, "final_best": best, "compute_s": compute, "pruned_share": pruned / len(study.trials)}


def compute_to_reach(curve: list, target: float) -> float | None:
    return next((c for c, best in curve if best <= target), None)


def compare(name: str, data: TrialData, trials: int, rounds: int) -> dict:
    runs = {m: [run_study(data, m, seed, trials, rounds) for seed in SEEDS] for m in METHODS}
    summary = {"dataset": name, "trials_per_study": trials, "rows_train": len(data.y_train),
               "best_log_loss": {m: [r["final_best"] for r in rs] for m, rs in runs.items()},
               "compute_s": {m: [round(r["compute_s"], 2) for r in rs] for m, rs in runs.items()},
               "pruned_share": {m: [round(r["pruned_share"], 3) for r in rs] for m, rs in runs.items()},
               "curves": {m: [r["curve"] for r in rs] for m, rs in runs.items()}}
    print(f"\n{name}: {trials} trials per study, seeds {SEEDS}; best validation log loss vs compute seconds")
    for m, rs in runs.items():
        for seed, r in zip(SEEDS, rs):
            points = r["curve"][:: max(1, len(r["curve"]) // 6)] + [r["curve"][-1]]
            print(f"  {m:<14} seed {seed}: " + "  ".join(f"{c:6.1f}s→{b:.4f}" for c, b in points))
    for m in (m for m in METHODS if m != "random"):
        shares = []
        for mine, rnd in zip(runs[m], runs["random"]):
            reached = compute_to_reach(mine["curve"], rnd["final_best"])
            shares.append(None if reached is None else round(reached / rnd["compute_s"], 3))
        summary[f"{m}_compute_share_to_reach_random_best"] = shares
        summary[f"{m}_total_compute_share"] = [round(a["compute_s"] / b["compute_s"], 3)
                                               for a, b in zip(runs[m], runs["random"])]
        print(f"  {m}: compute to reach random's final best, share of random's compute: "
              + ", ".join("not reached" if s is None else f"{s:.0%}" for s in shares)
              + (" (target ≤ 50%)" if m == "tpe_hyperband" else "")
              + "; its own total compute " + ", ".join(f"{x:.0%}" for x in summary[f"{m}_total_compute_share"])
              + "; final best minus random's " + ", ".join(f"{a['final_best'] - b['final_best']:+.4f}"
                                                          for a, b in zip(runs[m], runs["random"])))
    print("  pruned share of TPE+hyperband trials: "
          + ", ".join(f"{p:.0%}" for p in summary["pruned_share"]["tpe_hyperband"]) + " (target ≥ 30%)")
    return summary


def overhead(data: TrialData, trials: int, rounds: int, repeats: int) -> dict:
    """Wall time of trainpipe's worker (storage, heartbeats, MLflow, callbacks) vs a bare in-memory optimize."""
    from trainpipe.config import config_from_dict
    from trainpipe.store import Store
    from trainpipe.tracking.tracker import Tracker
    from trainpipe.tuning.study import create_study, open_storage
    from trainpipe.tuning.tracking import open_parent
    from trainpipe.tuning.worker import WorkerJob, run_worker

    times: dict[str, list[float]] = {"bare": [], "trainpipe": []}
    fits: dict[str, list[float]] = {"bare": [], "trainpipe": []}
    for repeat in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix="bench-tune-"))
        for name, array in (("X_train", data.X_train), ("y_train", data.y_train),
                            ("X_validation", data.X_val), ("y_validation", data.y_val)):
            np.save(folder / f"{name}.npy", array)
        (folder / "features.json").write_text(json.dumps({"labels": {"classes": [0, 1]}}))
        config = config_from_dict({
            "name": "bench", "task": "binary", "seed": 0, "store": str(folder / "store"),
            "data": {"path": "x", "target": "y"}, "model": {"type": "xgboost", "params": {"n_estimators": rounds}},
            "training": {"early_stopping_rounds": 30, "threads": 1}, "evaluation": {"primary_metric": "log_loss"},
            "tuning": {"enabled": True, "n_trials": trials, "pruner": {"type": "none"}, "plots": False}})
        url = f"sqlite:///{folder}/store/optuna.db"
        store = Store.locate(config.store)
        storage = open_storage(url, config.tuning)
        study = create_study("bench", storage, config.tuning, "minimize")
        tracker = Tracker(store, config.tracking)  # the stage opens these before the workers start
        parent = open_parent(tracker, "bench", study, {})
        job = WorkerJob(config=config.to_dict(), features_dir=str(folder), groups_file=None, study_name="bench",
                        storage=url, metric="log_loss", direction="minimize", threads=1, parent_run_id=parent,
                        experiment_id=tracker.experiment_id("bench"))
        objective_settings, _ = settings("random", 0, rounds)
        objective_settings = ObjectiveSettings(**{**objective_settings.__dict__, "pruner": config.tuning.pruner.model_dump()})
        order = ("bare", "trainpipe") if repeat % 2 == 0 else ("trainpipe", "bare")
        for kind in order:
            FIT_SECONDS[0] = 0.0
            started = time.perf_counter()
            if kind == "trainpipe":
                run_worker(job, 0, storage, config=config)
            else:
                bare = optuna.create_study(direction="minimize", sampler=make_sampler(config.tuning, objective_settings.space, 0))
                bare.optimize(make_objective(objective_settings, data), n_trials=trials)
            times[kind].append(time.perf_counter() - started)
            fits[kind].append(FIT_SECONDS[0])
    per_trial = {k: [v / trials * 1e3 for v in vs] for k, vs in times.items()}
    outside = {k: [(t - f) / trials * 1e3 for t, f in zip(times[k], fits[k])] for k in times}
    bare, tp = float(np.median(per_trial["bare"])), float(np.median(per_trial["trainpipe"]))
    extra = float(np.median(outside["trainpipe"])) - float(np.median(outside["bare"]))
    result = {"trials": trials, "repeats": repeats, "per_trial_ms": per_trial, "outside_fit_ms_per_trial": outside,
              "per_trial_ms_bare": bare, "per_trial_ms_trainpipe": tp, "overhead_wall": tp / bare - 1,
              "extra_ms_per_trial_outside_fit": extra, "overhead_outside_fit": extra / bare}
    print(f"\noverhead, {trials} trials × {repeats} interleaved repeats (TPE, no pruning, same parameters in both):")
    print(f"  wall per trial (median): bare {bare:.0f} ms, trainpipe {tp:.0f} ms → {result['overhead_wall']:+.1%} "
          f"(target ≤ +10%; per repeat bare {[round(v) for v in per_trial['bare']]}, trainpipe "
          f"{[round(v) for v in per_trial['trainpipe']]})")
    print(f"  outside model fitting (storage, tracking, sampling, scoring): +{extra:.0f} ms per trial = "
          f"{result['overhead_outside_fit']:+.1%} of a bare trial (fitting time varies most on a shared machine)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--overhead-trials", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--overhead-only", action="store_true", help="Only the overhead part, for quick checks; "
                        "writes no results file.")
    args = parser.parse_args()
    started = time.perf_counter()
    out = {"optuna": optuna.__version__, "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg(),
           "seeds": list(SEEDS), "metric": "validation log_loss (minimize)", "model": f"xgboost ≤{args.rounds} rounds, "
           "early stopping 30, 1 thread, default search space"}
    generated = make_data(args.rows)
    if not args.overhead_only:
        out["generated"] = compare(f"generated ({args.rows} rows × 20)", generated, args.trials, args.rounds)
        out["breast_cancer"] = compare("breast_cancer (sklearn bundled)", bundled_data(), args.trials, args.rounds)
    out["overhead"] = overhead(generated, args.overhead_trials, args.rounds, args.repeats)
    out["load_average_end"] = os.getloadavg()
    out["wall_s"] = time.perf_counter() - started
    where = "not written (--overhead-only: results come from full runs only)"
    if not args.overhead_only:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=2, default=str))
        where = f"wrote {RESULTS}"
    print(f"\n{where}; {out['wall_s']:.0f}s (load average {out['load_average_start']} → "
          f"{out['load_average_end']}: the machine is shared, timings are noisy)")


if __name__ == "__main__":
    main()
