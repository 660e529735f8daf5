"""Tuning benchmark: do trainpipe's default sampler and pruner reach random search's best in less compute, and
what does trainpipe's tuning machinery (RDB storage with heartbeats, MLflow trial runs, budgets) cost per trial?

Measured in one run, on xgboost (≤ --rounds rounds, early stopping 30, 1 thread) with its default search space,
validation log loss (lower is better; rmse for the regression table), on four tables: a fixed generated binary one
(make_data), and three real ones that scikit-learn ships in its wheel (breast_cancer: 569 × 30 binary; digits:
1797 × 64, 10 classes; diabetes: 442 × 10, regression).

- efficiency: per table and seed, each arm runs a study on the same
  objective, built as the tune stage builds it (worker.build_settings, search.make_sampler/make_pruner):
    trainpipe     trainpipe's defaults (TuningConfig(): sampler and pruner as a user gets them: univariate TPE with
                  start-up sized to the space + successive halving from a tenth of the rounds)
    random        random search, no pruning (the baseline)
    multivariate  the defaults before univariate TPE: multivariate TPE + the same successive halving
    median        the defaults before successive halving: multivariate TPE + the median pruner with warm-up and
                  interval a sixth of the rounds (--arms random,trainpipe,multivariate,median)
    previous      the defaults before this benchmark's issue: multivariate TPE with 10 start-up trials + hyperband
                  from round 1 (--arms random,trainpipe,multivariate,previous)
  Compute is counted in boosting rounds trained (the headline: independent of the machine's load) and in the
  trials' own wall seconds. Random search runs --trials trials; every other arm runs trials until it has spent
  as many rounds as random search did (at most MAX_TRIALS_FACTOR × --trials): equal compute, which is what the
  target compares (a pruned arm spends a third of random's rounds in the same number of trials, so stopping it
  there would ask it to reach random's best in a third of the compute). Reported: the compute the arm spends
  until its best reaches random search's final best, as a share of random search's total (target ≤ 50%), the
  same within only the first --trials trials (the earlier, trial-matched reading), and the share pruned.
  Both arms use the same seeds, so TPE's random start-up trials are the same parameter sets random search
  draws first (common random numbers); a reach through such a shared trial is marked `shared`.
- overhead: `run_worker` (what `trainpipe tune` runs: SQLite storage with heartbeats, per-trial attributes,
  MLflow nested runs, budget callbacks) against a bare in-memory `study.optimize` with the same objective,
  sampler and seed, alternating repeats, median (target ≤ 10% for trials of ≥ 0.5 s); no pruning on either side
  (OVERHEAD_TUNING), so every trial is a full fit of ≥ 0.5 s.

The rounds figures are deterministic (1 thread, fixed seeds): a rerun gives the same numbers, so each study runs
once; wall seconds vary with the load, which is sampled while the benchmark runs and reported.

Usage: .venv/bin/python benchmarks/bench_tune.py [--trials 30] [--rounds 300] [--datasets generated,...]
       [--seeds 0,1,2] [--overhead-trials 10] [--repeats 6] [--overhead-only] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

from trainpipe.config import config_from_dict
from trainpipe.tuning import objective as objective_module
from trainpipe.tuning.objective import TrialData, make_objective
from trainpipe.tuning.search import make_pruner, make_sampler
from trainpipe.tuning.worker import WorkerJob, build_settings

RESULTS = Path(__file__).resolve().parent / "results" / "bench_tune.json"
FIT_SECONDS = [0.0]  # time inside model.fit, summed over one optimize call (both sides use the same objective)
ARMS = {"trainpipe": {},  # trainpipe's defaults
        "random": {"sampler": {"type": "random"}, "pruner": {"type": "none"}},
        "multivariate": {"sampler": {"multivariate": True}},  # the defaults before univariate TPE
        "median": {"sampler": {"multivariate": True}, "pruner": {"type": "median"}},  # the defaults before halving
        "previous": {"sampler": {"type": "tpe", "n_startup_trials": 10, "multivariate": True},
                     "pruner": {"type": "hyperband", "min_resource": 1, "reduction_factor": 3}}}
# The overhead part: trainpipe's default sampler, no pruning, so every trial trains to early stopping (~1 s here):
# the target is for trials of ≥ 0.5 s, and the default pruner stops most trials at a tenth of the rounds (~0.2 s),
# which would measure the same fixed cost per trial against much shorter trials.
OVERHEAD_TUNING = {"pruner": {"type": "none"}}
EARLY_STOPPING = 30
MAX_TRIALS_FACTOR = 4  # equal-compute arms stop at random's rounds or at this many times its trials


def _timed_fit(fit):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fit(*args, **kwargs)
        finally:
            FIT_SECONDS[0] += time.perf_counter() - started
    return timed


objective_module.fit_model = _timed_fit(objective_module.fit_model)
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


def bundled(name: str, stratify: bool = True) -> TrialData:
    """A table scikit-learn ships in its wheel (nothing is downloaded), split 70/30 (stratified for classes)."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    X_train, X_val, y_train, y_val = train_test_split(X.astype(np.float32), y, test_size=0.3, random_state=0,
                                                      stratify=y if stratify else None)
    return TrialData(X_train, y_train, X_val, y_val)


def tables(rows: int) -> dict:
    """name -> (data, task, number of classes, description); the metric follows the task (metric_for)"""
    return {"generated": (lambda: make_data(rows), "binary", 2, f"generated {rows} × 20, binary"),
            "breast_cancer": (lambda: bundled("breast_cancer"), "binary", 2, "breast_cancer 569 × 30, binary"),
            "digits": (lambda: bundled("digits"), "multiclass", 10, "digits 1797 × 64, 10 classes"),
            "diabetes": (lambda: bundled("diabetes", stratify=False), "regression", 0,
                         "diabetes 442 × 10, regression (validation rmse)")}


def metric_for(task: str) -> str:
    """Validation log loss for the classification tables, rmse for the regression one (both minimised)."""
    return "rmse" if task == "regression" else "log_loss"


def pipeline_config(task: str, rounds: int, tuning: dict, store: str = "unused", n_trials: int = 30):
    return config_from_dict({
        "name": "bench", "task": task, "seed": 0, "store": store, "data": {"path": "x", "target": "y"},
        "model": {"type": "xgboost", "params": {"n_estimators": rounds}},
        "training": {"early_stopping_rounds": EARLY_STOPPING, "threads": 1},
        "evaluation": {"primary_metric": metric_for(task)},
        "tuning": {"enabled": True, "n_trials": n_trials, "plots": False, **tuning}})


def arm_settings(arm: str, task: str, n_classes: int, rounds: int, seed: int):
    """The objective's settings, sampler and pruner of one arm, made as the tune stage's worker makes them."""
    config = pipeline_config(task, rounds, OVERHEAD_TUNING if arm == "overhead" else ARMS[arm])
    job = WorkerJob(config={}, features_dir="", groups_file=None, study_name="", storage="", metric=metric_for(task),
                    direction="minimize", threads=1)
    settings = build_settings(config, job, {"labels": {"classes": list(range(n_classes))}})
    settings = type(settings)(**{**settings.__dict__, "seed": seed})
    return settings, make_sampler(config.tuning, settings.space, seed), make_pruner(settings.pruner)


def stop_after_rounds(budget: int):
    """An optimize callback that stops the study once its trials have trained `budget` rounds in all."""
    spent = [0]

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        spent[0] += int(trial.user_attrs.get("trainpipe", {}).get("iterations", 0))
        if spent[0] >= budget:
            study.stop()
    return callback


def run_study(data: TrialData, task: str, n_classes: int, arm: str, seed: int, trials: int, rounds: int,
              budget_rounds: int | None = None) -> dict:
    """`trials` trials, or with budget_rounds: trials until that many rounds are spent (≤ MAX_TRIALS_FACTOR × trials)."""
    settings, sampler, pruner = arm_settings(arm, task, n_classes, rounds, seed)
    # named: hyperband assigns brackets by a hash of the study name and trial number
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner, study_name=f"{arm}-{seed}")
    if budget_rounds is None:
        study.optimize(make_objective(settings, data), n_trials=trials)
    else:
        study.optimize(make_objective(settings, data), n_trials=trials * MAX_TRIALS_FACTOR,
                       callbacks=[stop_after_rounds(budget_rounds)])
    out = {"rounds": [], "seconds": [], "state": [], "value": [], "params": []}
    for trial in study.trials:
        record = trial.user_attrs["trainpipe"]
        out["rounds"].append(int(record["iterations"]))
        out["seconds"].append(float(record["duration_s"]))
        out["state"].append(trial.state.name)
        out["value"].append(trial.value if trial.state.name == "COMPLETE" else None)
        out["params"].append(trial.params)
    out["pruner"] = settings.pruner
    return out


def reach(run: dict, target: float, unit: str) -> tuple[float | None, int | None]:
    """(compute spent until the best complete value is ≤ target, the trial that got there)."""
    spent = 0.0
    for number, (cost, value) in enumerate(zip(run[unit], run["value"])):
        spent += cost
        if value is not None and value <= target:
            return spent, number
    return None, None


def compare(name: str, data: TrialData, task: str, n_classes: int, arms: list[str], seeds: list[int], trials: int,
            rounds: int) -> dict:
    rows, runs = [], {}
    for seed in seeds:
        base = run_study(data, task, n_classes, "random", seed, trials, rounds)
        runs[seed] = {"random": base}
        for arm in (a for a in arms if a != "random"):  # equal compute: as many rounds as random search spent
            runs[seed][arm] = run_study(data, task, n_classes, arm, seed, trials, rounds, budget_rounds=sum(base["rounds"]))
        target = min(v for v in base["value"] if v is not None)
        row = {"seed": seed, "random_best": target, "random_rounds": sum(base["rounds"]),
               "random_seconds": round(sum(base["seconds"]), 2)}
        for arm in (a for a in arms if a != "random"):
            mine = runs[seed][arm]
            rounds_at, number = reach(mine, target, "rounds")
            seconds_at, _ = reach(mine, target, "seconds")
            first = {key: mine[key][:trials] for key in ("rounds", "value")}
            rounds_at_same_trials, _ = reach(first, target, "rounds")
            shared = number is not None and mine["params"][number] in base["params"]
            row[arm] = {
                "best": min(v for v in mine["value"] if v is not None),
                "rounds_share_to_reach": None if rounds_at is None else round(rounds_at / row["random_rounds"], 3),
                "seconds_share_to_reach": None if seconds_at is None else round(seconds_at / row["random_seconds"], 3),
                "rounds_share_to_reach_within_same_trials": None if rounds_at_same_trials is None
                else round(rounds_at_same_trials / row["random_rounds"], 3),
                "reached_at_trial": number, "reached_through_shared_startup_trial": shared, "trials": len(mine["value"]),
                "total_rounds_share": round(sum(mine["rounds"]) / row["random_rounds"], 3),
                "total_rounds_share_first_trials": round(sum(mine["rounds"][:trials]) / row["random_rounds"], 3),
                "pruned_share": round(mine["state"].count("PRUNED") / len(mine["state"]), 3)}
        rows.append(row)
        print(f"  {name} seed {seed}: random best {target:.4f} in {row['random_rounds']} rounds "
              f"({row['random_seconds']:.0f}s); " + "; ".join(_line(arm, row[arm]) for arm in arms if arm != "random"),
              flush=True)
    return {"table": name, "trials_per_study": trials, "rows_train": len(data.y_train),
            "rows_validation": len(data.y_val), "pruner": {arm: runs[seeds[0]][arm]["pruner"] for arm in arms},
            "studies": rows, "trials": {str(seed): runs[seed] for seed in seeds}}


def _line(arm: str, r: dict) -> str:
    share = r["rounds_share_to_reach"]
    reached = "not reached" if share is None else (f"reached at {share:.0%} of random's rounds "
                                                  f"({r['seconds_share_to_reach']:.0%} of its seconds)"
                                                  + (", shared start-up trial" if r["reached_through_shared_startup_trial"]
                                                     else ""))
    return f"{arm} best {r['best']:.4f} {reached}, {r['trials']} trials, {r['pruned_share']:.0%} pruned"


def verdicts(results: dict, arm: str) -> dict:
    studies = [(table, row) for table, res in results.items() for row in res["studies"]]
    met = [(t, r["seed"]) for t, r in studies
           if r[arm]["rounds_share_to_reach"] is not None and r[arm]["rounds_share_to_reach"] <= 0.5]
    shared = [(t, r["seed"]) for t, r in studies if (t, r["seed"]) in met and r[arm]["reached_through_shared_startup_trial"]]
    within = [(t, r["seed"]) for t, r in studies if r[arm]["rounds_share_to_reach_within_same_trials"] is not None
              and r[arm]["rounds_share_to_reach_within_same_trials"] <= 0.5]
    return {"met": len(met), "of": len(studies), "met_studies": met, "met_through_shared_startup_trial": shared,
            "met_generated_and_breast_cancer": sum(t in ("generated", "breast_cancer") for t, _ in met),
            "met_within_same_trials": len(within), "met_studies_within_same_trials": within}


def overhead(data: TrialData, trials: int, rounds: int, repeats: int) -> dict:
    """Wall time of trainpipe's worker (storage, heartbeats, MLflow, callbacks) vs a bare in-memory optimize, both
    with trainpipe's default sampler and no pruning (OVERHEAD_TUNING)."""
    from trainpipe.store import Store
    from trainpipe.tracking.tracker import Tracker
    from trainpipe.tuning.study import create_study, open_storage
    from trainpipe.tuning.tracking import open_parent
    from trainpipe.tuning.worker import run_worker

    times: dict[str, list[float]] = {"bare": [], "trainpipe": []}
    fits: dict[str, list[float]] = {"bare": [], "trainpipe": []}
    for repeat in range(repeats):
        folder = Path(tempfile.mkdtemp(prefix="bench-tune-"))
        for name, array in (("X_train", data.X_train), ("y_train", data.y_train),
                            ("X_validation", data.X_val), ("y_validation", data.y_val)):
            np.save(folder / f"{name}.npy", array)
        (folder / "features.json").write_text(json.dumps({"labels": {"classes": [0, 1]}}))
        config = pipeline_config("binary", rounds, OVERHEAD_TUNING, store=str(folder / "store"), n_trials=trials)
        url = f"sqlite:///{folder}/store/optuna.db"
        store = Store.locate(config.store)
        storage = open_storage(url, config.tuning)
        study = create_study("bench", storage, config.tuning, "minimize")
        tracker = Tracker(store, config.tracking)  # the stage opens these before the workers start
        parent = open_parent(tracker, "bench", study, {})
        job = WorkerJob(config=config.to_dict(), features_dir=str(folder), groups_file=None, study_name="bench",
                        storage=url, metric="log_loss", direction="minimize", threads=1, parent_run_id=parent,
                        experiment_id=tracker.experiment_id("bench"))
        settings, _, _ = arm_settings("overhead", "binary", 2, rounds, 0)
        order = ("bare", "trainpipe") if repeat % 2 == 0 else ("trainpipe", "bare")
        for kind in order:
            FIT_SECONDS[0] = 0.0
            started = time.perf_counter()
            if kind == "trainpipe":
                run_worker(job, 0, storage, config=config)
            else:
                bare = optuna.create_study(direction="minimize", sampler=make_sampler(config.tuning, settings.space, 0),
                                           pruner=make_pruner(settings.pruner))
                bare.optimize(make_objective(settings, data), n_trials=trials)
            times[kind].append(time.perf_counter() - started)
            fits[kind].append(FIT_SECONDS[0])
    per_trial = {k: [v / trials * 1e3 for v in vs] for k, vs in times.items()}
    outside = {k: [(t - f) / trials * 1e3 for t, f in zip(times[k], fits[k])] for k in times}
    bare, tp = float(np.median(per_trial["bare"])), float(np.median(per_trial["trainpipe"]))
    extra = float(np.median(outside["trainpipe"])) - float(np.median(outside["bare"]))
    result = {"trials": trials, "repeats": repeats, "per_trial_ms": per_trial, "outside_fit_ms_per_trial": outside,
              "per_trial_ms_bare": bare, "per_trial_ms_trainpipe": tp, "overhead_wall": tp / bare - 1,
              "extra_ms_per_trial_outside_fit": extra, "overhead_outside_fit": extra / bare,
              "pruner": settings.pruner}
    print(f"\noverhead, {trials} trials × {repeats} interleaved repeats (trainpipe's default sampler, no pruning, in both):")
    print(f"  wall per trial (median): bare {bare:.0f} ms, trainpipe {tp:.0f} ms → {result['overhead_wall']:+.1%} "
          f"(target ≤ +10% for trials ≥ 0.5 s; per repeat bare {[round(v) for v in per_trial['bare']]}, trainpipe "
          f"{[round(v) for v in per_trial['trainpipe']]})")
    print(f"  outside model fitting (storage, tracking, sampling, scoring): +{extra:.0f} ms per trial = "
          f"{result['overhead_outside_fit']:+.1%} of a bare trial (fitting time varies most on a shared machine)")
    return result


class LoadSampler:
    """The 1-minute load average every 15 s while the benchmark runs (the machine may be shared)."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(15)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"median": round(float(np.median(self.samples)), 2), "min": round(min(self.samples), 2),
                "max": round(max(self.samples), 2), "samples": len(self.samples)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--datasets", default="generated,breast_cancer,digits,diabetes")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default="random,trainpipe,multivariate", help="arms to run (also: median, previous)")
    parser.add_argument("--overhead-trials", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--overhead-only", action="store_true", help="Only the overhead part; writes no results file.")
    parser.add_argument("--quick", action="store_true", help="Small sizes to check the script runs (10 trials, "
                        "100 rounds, generated + breast_cancer, one seed); writes no results file.")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.rows, args.rounds, args.datasets, args.seeds = 10, 2000, 100, "generated,breast_cancer", "0"
        args.overhead_trials, args.repeats = 3, 2
    started, load = time.perf_counter(), LoadSampler()
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = ["random"] + [a for a in args.arms.split(",") if a != "random"]
    full = (not args.overhead_only and not args.quick and args.datasets == parser.get_default("datasets")
            and args.seeds == parser.get_default("seeds") and args.arms == parser.get_default("arms"))
    out = {"optuna": optuna.__version__, "cpu_count": os.cpu_count(), "seeds": seeds, "arms": {arm: ARMS[arm] for arm in arms},
           "metric": "validation log_loss (minimize); diabetes: validation rmse (minimize)", "compute": "boosting rounds trained (headline); trial seconds; arms other than random run until they have spent random search's rounds (equal compute)",
           "model": f"xgboost ≤{args.rounds} rounds, early stopping {EARLY_STOPPING}, 1 thread, default search space",
           "results": {}}
    catalogue = tables(args.rows)
    if not args.overhead_only:
        for name in args.datasets.split(","):
            make, task, n_classes, label = catalogue[name]
            print(f"\n{label}: {args.trials} trials per study, seeds {seeds}", flush=True)
            out["results"][name] = compare(name, make(), task, n_classes, arms, seeds, args.trials, args.rounds)
        for arm in (a for a in arms if a != "random"):
            out[f"verdict_{arm}"] = v = verdicts(out["results"], arm)
            print(f"\n{arm}: reached random search's best in ≤ 50% of its rounds in {v['met']} of {v['of']} studies "
                  f"({v['met_generated_and_breast_cancer']} of the generated and breast_cancer ones; "
                  f"{len(v['met_through_shared_startup_trial'])} through a shared start-up trial); within random's "
                  f"trial count: {v['met_within_same_trials']} of {v['of']}")
    out["overhead"] = overhead(make_data(args.rows), args.overhead_trials, args.rounds, args.repeats)
    out["load_average_1min"] = load.stop()
    out["wall_s"] = time.perf_counter() - started
    where = "not written (only full runs with the default tables, seeds and arms write results)"
    if full:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(out, indent=2, default=str))
        where = f"wrote {RESULTS}"
    print(f"\n{where}; {out['wall_s']:.0f}s, load average (1 min) median {out['load_average_1min']['median']} "
          f"(min {out['load_average_1min']['min']}, max {out['load_average_1min']['max']}) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
