"""train: fit the model family on the training part, early-stopping on validation.

Without a tune stage, `model` is fitted as configured. After one, this stage takes the study's hand-over
(`plan`): the best parameters over `model.params`, fitted on train, or on train + validation when
`tuning.retrain_on` says so; then no held-out rows are left to stop on, so the iteration count is the best
trial's (boosting rounds or epochs: the family's `iteration_param`) and early stopping is off.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from trainpipe.models import ModelConfig, build_family, get_family
from trainpipe.models.base import FitContext
from trainpipe.stages.context import StageContext, StageResult, StageSpec
from trainpipe.stages.watching import StageWatch
from trainpipe.tasks.base import FitPlan


def line(s: dict) -> str:
    return (f"{s.get('family')}: {s.get('iterations')} iteration(s)"
            + (f", best {s.get('best_iteration')}" if s.get("best_iteration") is not None else ""))


def user_code(config: Any) -> dict[str, str]:
    """Source hashes of user modules the model imports (an estimator outside site-packages): editing one re-trains."""
    return get_family(config.model.type).user_code_hashes(config.model.estimator)


SPEC = StageSpec("train", sections=("model", "training", "seed", "task", "ranking"), upstream=("features", "tune"),
                 line=line, code=user_code)


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


def run(ctx: StageContext) -> StageResult:
    config = ctx.config
    chosen = plan(ctx)  # the tune stage's best parameters, when it ran
    threads = config.training.threads or os.cpu_count() or 1
    model = build_family(chosen.model, config.task, ctx.task.n_classes(ctx), config.seed, threads)
    watch = StageWatch(ctx, "train")  # health checks per epoch/round, live.json, system metrics
    context = FitContext(checkpoint_dir=ctx.checkpoint_dir("train"), checkpoint=config.training.checkpoint,
                         config_hash=ctx.cache_key, resume_anyway=ctx.resume_anyway, verbose=ctx.progress,
                         on_epoch=ctx.tracking.live if ctx.tracking is not None else None,
                         callbacks=config.training.callbacks, watch=watch.fit_watch())
    with watch.sampling():
        fitted = ctx.task.fit(ctx, model, chosen.fit, context)
    result, seconds = fitted.result, fitted.seconds
    model.save(ctx.stage_dir / "model")
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
