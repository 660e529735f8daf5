"""train: fit the model family on the training part, early-stopping on validation.

Without a tune stage, `model` is fitted as configured. After one, this stage takes the study's hand-over
(`plan`): the best parameters over `model.params`, fitted on train, or on train + validation when
`tuning.retrain_on` says so; then no held-out rows are left to stop on, so the iteration count is the best
trial's (boosting rounds or epochs: the family's `iteration_param`) and early stopping is off.

With `training.distributed.nproc_per_node > 1` and a family that trains under torchrun (the torch families), the
fit itself runs in torchrun's processes (`python -m trainpipe.pipeline.train_worker`, the same `fit` below in
every rank, DDP inside the engine) and this stage reads back what rank 0 wrote: the model folder and the fit's
result. Under a torchrun the user started (`torchrun ... trainpipe stage train --run ID`) this process is rank 0
and fits in place (docs/distributed.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from trainpipe.engine.config import default_threads
from trainpipe.errors import BudgetExceeded, ConfigError
from trainpipe.models import ModelConfig, build_family, get_family
from trainpipe.models.base import FitContext, FitResult, trains_under_torchrun
from trainpipe.monitoring.events import budget_exceeded
from trainpipe.stages.context import StageContext, StageResult, StageSpec
from trainpipe.stages.watching import StageWatch
from trainpipe.tasks.base import FitPlan, Fitted

WORKER = "trainpipe.pipeline.train_worker"  # the module torchrun runs in every rank


def line(s: dict) -> str:
    """`best_iteration` is stored 0-based (xgboost's own index; MLflow's metric, the tuner's hand-over); people read
    it 1-based, as the progress lines count epochs and rounds (`epoch 2/4`) and the report's "best epoch" does."""
    best = s.get("best_iteration")
    return (f"{s.get('family')}: {s.get('iterations')} iteration(s)"
            + (f", best {int(best) + 1}" if best is not None else ""))


def user_code(config: Any) -> dict[str, str]:
    """Source hashes of user modules the model imports (an estimator outside site-packages): editing one re-trains."""
    return get_family(config.model.type).user_code_hashes(config.model.estimator)


SPEC = StageSpec("train", sections=("model", "training", "seed", "task", "ranking"), upstream=("features", "tune"),
                 line=line, starts_tracking=True, code=user_code)


@dataclass(frozen=True)
class TrainPlan:
    model: ModelConfig
    fit: FitPlan
    tuned: dict | None  # best_params.json, when a study picked the parameters


def plan(ctx: StageContext) -> TrainPlan:
    """What train fits: without a tune stage, exactly `model` on train as before."""
    config = ctx.config
    tuned_file = ctx.upstream("tune") / "best_params.json"
    stopping, train_metrics = config.training.early_stopping_rounds, config.training.train_metrics
    if not (config.tuning.enabled and tuned_file.exists()):
        return TrainPlan(config.model, FitPlan(stopping, False, train_metrics), None)
    tuned = json.loads(tuned_file.read_text())
    params = {**config.model.params, **tuned["params"]}
    with_validation = tuned["retrain_on"] == "train+validation"
    if with_validation:
        name = get_family(config.model.type).iteration_param
        if name and tuned.get("best_iteration") is not None:
            params[name] = int(tuned["best_iteration"]) + 1
        stopping = None
    return TrainPlan(config.model.model_copy(update={"params": params}), FitPlan(stopping, with_validation, train_metrics),
                     tuned)


def fit(ctx: StageContext, chosen: TrainPlan, on_epoch: Callable[[int, dict[str, float]], None] | None) -> tuple[Any, Fitted]:
    """Build the family and fit it through the run's task: what this process, or every torchrun rank, does."""
    config = ctx.config
    threads = config.training.threads or default_threads()
    model = build_family(chosen.model, config.task, ctx.task.n_classes(ctx), config.seed, threads)
    watch = StageWatch(ctx, "train")  # health checks per epoch/round, live.json, system metrics
    context = FitContext(checkpoint_dir=ctx.checkpoint_dir("train"), checkpoint=config.training.checkpoint,
                         config_hash=ctx.cache_key, resume_anyway=ctx.resume_anyway, verbose=ctx.progress,
                         on_epoch=on_epoch, callbacks=config.training.callbacks,
                         backend=config.training.distributed.backend, distributed=config.training.distributed,
                         budget=ctx.budget.poll if ctx.budget is not None else None, watch=watch.fit_watch())
    try:
        with watch.sampling():
            return model, ctx.task.fit(ctx, model, chosen.fit, context)
    except BudgetExceeded as exc:
        ctx.emit(budget_exceeded(ctx.run_id, exc.key or "budget", exc.message))
        raise


def check_distributed(config: Any) -> None:
    """`training.distributed` for torchrun, before any data is read (pipeline preflight) and again here."""
    distributed = config.training.distributed
    if distributed.nproc_per_node > 1 and not trains_under_torchrun(get_family(config.model.type)):
        raise ConfigError(f"training.distributed.nproc_per_node: {config.model.type} trains in one process; torchrun "
                          "is for the torch families (torch_mlp, two_tower); set it to 1",
                          key="training.distributed.nproc_per_node")
    if distributed.nproc_per_node > 1 and distributed.node_rank != 0:
        raise ConfigError("training.distributed.node_rank: the machine that runs the train stage is node 0; on the "
                          "other machines start torchrun yourself (docs/distributed.md)",
                          key="training.distributed.node_rank")


def launches_torchrun(config: Any) -> bool:
    """Whether this stage starts torchrun: several processes asked for (a family that trains under it) and this
    process not already one of a torchrun job's ranks."""
    check_distributed(config)
    return config.training.distributed.nproc_per_node > 1 and int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1


def fitted_document(fitted: Fitted) -> dict[str, Any]:
    """What rank 0 hands back to the stage next to the model folder (fitted.json)."""
    return {"result": asdict(fitted.result), "seconds": fitted.seconds, "metrics": fitted.metrics,
            "summary": fitted.summary}


def launch_fit(ctx: StageContext) -> Fitted:
    """The fit on `nproc_per_node` torchrun processes; rank 0 saves the model into this stage's folder."""
    from trainpipe.engine.launch import launch, torchrun_command

    distributed = ctx.config.training.distributed
    checkpoints = ctx.checkpoint_dir("train")
    statuses = checkpoints / "ranks"  # outside the stage's folder: a failed stage's reasons stay readable
    args = ["--store", str(ctx.store.root), "--run-id", ctx.run_id, "--out", str(ctx.stage_dir), "--status",
            str(statuses), "--cache-key", ctx.cache_key]
    args += (["--resume-anyway"] if ctx.resume_anyway else []) + (["--progress"] if ctx.progress else [])
    world = distributed.nproc_per_node * distributed.nnodes
    command = torchrun_command(distributed, ctx.run_id, checkpoints / "torchrun", WORKER, args)
    if ctx.writes is not None:
        ctx.writes.wait()  # the ranks read the features from their files
    # Each rank's progress goes to the console through torchrun (rank 0's lines); the epochs reach MLflow with
    # the stage's history when it ends, from this process, which owns the MLflow run.
    launch(command, statuses, checkpoints / "torchrun.log", world)
    handed = ctx.stage_dir / "fitted.json"
    doc = json.loads(handed.read_text())
    handed.unlink()
    return Fitted(FitResult(**doc["result"]), doc["seconds"], doc["metrics"], doc["summary"])


def run(ctx: StageContext) -> StageResult:
    config = ctx.config
    chosen = plan(ctx)  # the tune stage's best parameters, when it ran
    if launches_torchrun(config):
        fitted = launch_fit(ctx)
    else:
        model, fitted = fit(ctx, chosen, ctx.tracking.live if ctx.tracking is not None else None)
        model.save(ctx.stage_dir / "model")
    result, seconds = fitted.result, fitted.seconds
    (ctx.stage_dir / "history.json").write_text(json.dumps(result.history))
    metrics = {"train_seconds": seconds, "iterations": float(result.iterations), **fitted.metrics}
    if result.best_iteration is not None:
        metrics["best_iteration"] = float(result.best_iteration)
    tuned = chosen.tuned
    return StageResult(
        outputs={"model": "model", "history": "history.json"},
        history="history.json",
        artifacts=["model", "history.json"],
        metrics=metrics,
        summary={"family": config.model.type, "iterations": result.iterations, "best_iteration": result.best_iteration,
                 "stopped_early": result.stopped_early, "seconds": round(seconds, 2), **fitted.summary,
                 **({"tuned_params": tuned["params"], "retrain_on": tuned["retrain_on"]} if tuned else {})},
    )
