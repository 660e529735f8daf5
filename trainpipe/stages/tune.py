"""tune: search the model's parameters with Optuna; train then fits the best ones.

Runs only when `tuning.enabled` (`trainpipe tune` sets it). The study lives in RDB storage under a name
fixed by data, model and search settings, so a rerun (after a kill, or with a larger `n_trials`) continues
it. The stage's identity is the best parameters: an unchanged result lets train reuse its cache.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from trainpipe.engine.config import default_threads
from trainpipe.errors import ModelError
from trainpipe.evaluation.metrics import LOWER_IS_BETTER, primary_metric
from trainpipe.hashing import canonical_hash
from trainpipe.stages.context import StageContext, StageResult, StageSpec, number
from trainpipe.stages.watching import StageWatch
from trainpipe.tuning import budget as budgets
from trainpipe.tuning import study as studies
from trainpipe.tuning.objective import outcome
from trainpipe.tuning.space import fixed_params
from trainpipe.tuning.worker import WorkerJob, run_worker, start_workers, wait_workers, write_job

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig
    from trainpipe.tracking.tracker import Tracker
    from trainpipe.tuning.config import TuningConfig


def line(s: dict) -> str:
    return (f"{s.get('study')}: best {s.get('metric')} {number(s.get('best_value'))} (trial {s.get('best_trial')}) · "
            f"{(s.get('trials') or {}).get('PRUNED', 0)} pruned · {s.get('message')}")


# Only with tuning.enabled (when off it is absent from the run and from train's cache key). Its identity is the
# best parameters, so train's cache follows the study's result, not the study.
SPEC = StageSpec("tune", sections=("tuning", "model", "training", "seed", "task", "evaluation"), upstream=("features",),
                 line=line, starts_tracking=True, enabled_by="tuning.enabled")


def objective_of(config: Any) -> tuple[str, str]:
    """The tuned metric and its direction: `tuning.metric` or the task's primary metric."""
    metric = config.tuning.metric or primary_metric(config.task, config.evaluation)[0]
    default = "minimize" if metric in LOWER_IS_BETTER else "maximize"
    return metric, config.tuning.direction or default


def run(ctx: StageContext) -> StageResult:
    config, tuning = ctx.config, ctx.config.tuning
    features = ctx.manifest("features")
    metric, direction = objective_of(config)
    storage_url = tuning.storage or ctx.store.optuna_uri
    name = studies.study_name(config, features["identity"])
    tracker = _tracker(ctx)  # MLflow is imported before the lock: other tunes wait only for the creation itself
    with studies.creation_lock(storage_url):  # tables, study and its parent MLflow run: one of each
        storage, study = studies.open_study(storage_url, tuning, name, direction,
                                            attrs={"metric": metric, "trainpipe.model": config.model.type})
        parent = _parent_run(ctx, tracker, study, metric)

    groups_file = None
    if tuning.cv.folds and tuning.cv.strategy == "group":
        groups_file = ctx.stage_dir / "groups.npy"
        column = tuning.cv.group_column
        rows = [ctx.raw_rows(s) for s in ("train", "validation")]
        if column not in rows[0].columns:
            raise ModelError(f"tuning.cv.group_column: no column {column!r} in the data", key="tuning.cv.group_column")
        np.save(groups_file, np.concatenate([r[column].astype(str).to_numpy() for r in rows]).astype(object),
                allow_pickle=True)

    threads = config.training.threads or default_threads(tuning.workers)
    job = WorkerJob(config=config.to_dict(), features_dir=str(ctx.upstream("features")),
                    groups_file=str(groups_file) if groups_file else None, study_name=name, storage=storage_url,
                    metric=metric, direction=direction, threads=threads, parent_run_id=parent,
                    experiment_id=tracker.experiment_id(config.tracking.experiment or config.name) if tracker else None,
                    store_root=str(ctx.store.root))
    job_file = ctx.stage_dir / "job.json"
    write_job(job, job_file, config.recorded_dict())
    with StageWatch(ctx, "tune").sampling():  # CPU/memory/GPU of the study into the run's system metrics
        results = _optimise(ctx, job, job_file, storage)
    mine = results[0]

    import optuna

    study = optuna.load_study(study_name=name, storage=storage)  # every worker's trials, fresh from the storage
    best = studies.best_trial(study, direction)
    if best is None:  # other workers' trials (a --join, tuning.workers) may still complete
        studies.wait_for_running(study, tuning.grace_period, on_wait=lambda n: _say(
            ctx, f"tune: no trial completed yet; waiting for {n} running in other workers"))
        best = studies.best_trial(study, direction)
    if best is None:
        timed_out = sum(outcome(t).get("stopped_by") == "trial_timeout" for t in study.trials)
        hint = (f"; {timed_out} stopped by tuning.trial_timeout {tuning.trial_timeout:g}s: raise it" if timed_out
                else "; raise tuning.n_trials or loosen the pruner")
        raise ModelError(f"tuning: no trial of study {name} completed ({studies.counts(study)}){hint}", key="tuning")
    summary = _summary(study, best, name, storage_url, metric, direction, mine["stopped_by"], tuning, results)
    summary["fixed_params"] = _jsonable(fixed_params(config))
    best_params = _best_params(config, best)
    (ctx.stage_dir / "best_params.json").write_text(json.dumps(
        {"params": best_params, "best_iteration": outcome(best).get("best_iteration"),
         "retrain_on": tuning.retrain_on, "trial": best.number}, indent=2, default=str))
    study.trials_dataframe().to_csv(ctx.stage_dir / "trials.csv", index=False)

    from trainpipe.tuning.plots import save_plots

    plots, summary["plots_skipped"] = (save_plots(study, ctx.stage_dir / "plots", metric, seed=config.seed)
                                       if tuning.plots else ([], {}))
    (ctx.stage_dir / "study.json").write_text(json.dumps(summary, indent=2, default=str))
    if tracker is not None:
        from trainpipe.tuning.tracking import backfill, finish_parent, metric_names

        assert parent is not None and job.experiment_id is not None  # both exist whenever tracking is on
        backfill(tracker, job.experiment_id, parent, study, metric_names(metric, tuning.latency_objective))
        finish_parent(tracker, parent, summary, [ctx.stage_dir / "study.json", ctx.stage_dir / "best_params.json",
                                                 *[ctx.stage_dir / "plots" / p for p in plots]])
    identity = canonical_hash({"study": name, "params": best_params, "retrain_on": tuning.retrain_on,
                               "best_iteration": outcome(best).get("best_iteration")})
    return StageResult(
        identity=identity,
        outputs={"best_params": "best_params.json", "study": "study.json", "trials": "trials.csv"},
        artifacts=["best_params.json", "study.json", "trials.csv"] + (["plots"] if plots else []),
        metrics={"tuning_best_value": summary["best_value"], "tuning_trials_finished": float(summary["finished"]),
                 "tuning_cost_usd": summary["cost_usd"]},
        summary={k: summary[k] for k in ("study", "storage", "metric", "direction", "trials", "best_value",
                                          "best_params", "fixed_params", "best_trial", "stopped_by", "message",
                                          "cost_usd")},
    )


def _say(ctx: StageContext, line: str) -> None:
    if ctx.progress:  # the CLI without --json
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _optimise(ctx: StageContext, job: WorkerJob, job_file: Any, storage: Any) -> list[dict]:
    """Every worker's result, worker 0 first. Worker 0 runs in this process, the others as subprocesses; with
    DDP trials (`tuning.trial_world_size` > 1) every worker is a torchrun job (tuning/worker.py) and this process
    only waits (no live line: rank 0 of worker 0 writes its lines to worker-0.log). Anything ending this process
    early (SIGTERM, an error) kills the workers; their ranks die with them."""
    tuning = ctx.config.tuning
    ddp = tuning.trial_world_size > 1
    started = start_workers(job_file, tuning.workers - (0 if ddp else 1), ctx.stage_dir, job, first=0 if ddp else 1,
                            trial_world_size=tuning.trial_world_size)
    try:
        mine = [] if ddp else [run_worker(job, 0, storage, progress=ctx.progress, config=ctx.config)]
        return mine + wait_workers(started)
    except BaseException:
        for proc, _ in started:
            proc.kill()
        raise


def _tracker(ctx: StageContext) -> Tracker | None:
    if not ctx.config.tracking.enabled:
        return None
    from trainpipe.tracking.tracker import Tracker

    return Tracker(ctx.store, ctx.config.tracking)


def _parent_run(ctx: StageContext, tracker: Tracker | None, study: Any, metric: str) -> str | None:
    if tracker is None:
        return None
    from trainpipe.tracking.tracker import flatten
    from trainpipe.tuning.tracking import open_parent

    config = ctx.config
    recorded = config.recorded_dict()  # secrets redacted (e.g. a password in tuning.storage or a tag)
    tags = {"optuna.study": study.study_name, "trainpipe.run_id": ctx.run_id, "trainpipe.stage": "tune",
            "optuna.metric": metric, "model.type": config.model.type, **recorded["tracking"]["tags"]}
    parent = open_parent(tracker, config.tracking.experiment or config.name, study, tags)
    settings = {k: v for k, v in recorded["tuning"].items() if k != "space"}
    try:
        tracker.log_params(parent, flatten({"tuning": settings}))
    except Exception:  # params of a reopened study run are already there (MLflow params never change)
        pass
    return parent


def _best_params(config: PipelineConfig, best: Any) -> dict:
    from trainpipe.tuning.space import decode, family_space

    return decode(family_space(config), dict(best.params))


def _summary(study: Any, best: Any, name: str, storage_url: str, metric: str, direction: str, stopped_by: str,
             tuning: TuningConfig, results: list[dict]) -> dict:
    counts = studies.counts(study)
    finished = sum(counts.get(s, 0) for s in studies.FINISHED)
    cost = studies.total_cost(study)
    return {"study": name, "storage": studies.redact(storage_url), "metric": metric, "direction": direction,
            "trials": counts, "finished": finished, "best_value": float(best.values[0]),
            "best_values": [float(v) for v in best.values], "best_params": _jsonable(best.params),
            "best_trial": best.number, "stopped_by": stopped_by, "cost_usd": cost,
            "message": budgets.describe(stopped_by, tuning, cost, finished),
            "workers": [{k: r[k] for k in ("worker", "trials_run", "stopped_by", "recovered")} for r in results]}


def _jsonable(params: dict) -> dict:
    return json.loads(json.dumps(params, default=str))


if __name__ == "__main__":  # a worker process of a study (tuning.workers > 1, or a rank of DDP trials), tuning/worker.py
    import sys

    from trainpipe.config import config_from_dict
    from trainpipe.tuning.worker import main

    sys.exit(main(sys.argv[1:], lambda doc: config_from_dict(doc, source="tuning job")))
