"""train: fit the model family on the train matrix, early-stopping on validation."""

from __future__ import annotations

import json
import os
import time

from trainpipe.models import build_family
from trainpipe.models.base import FitContext
from trainpipe.stages import load_arrays
from trainpipe.tuning.retrain import plan as train_plan


def run(ctx) -> dict:
    if ctx.config.task == "ranking":  # interactions, not a features matrix: trainpipe/ranking/stages.py
        from trainpipe.ranking import stages as ranking

        return ranking.train(ctx)
    config = ctx.config
    data = load_arrays(ctx, "features", ["X_train", "y_train", "X_validation", "y_validation"])
    info = json.loads((ctx.upstream("features") / "features.json").read_text())
    labels = info["labels"]
    n_classes = len(labels["classes"] or [])
    threads = config.training.threads or os.cpu_count() or 1
    plan = train_plan(ctx, data)  # the tune stage's best parameters, when it ran
    model = build_family(plan.model, config.task, n_classes, config.seed, threads)

    context = FitContext(categorical=info.get("categorical_codes"), checkpoint_dir=ctx.checkpoint_dir("train"),
                         checkpoint=config.training.checkpoint, config_hash=ctx.cache_key,
                         resume_anyway=ctx.resume_anyway, verbose=ctx.progress,
                         on_epoch=ctx.tracking.live if ctx.tracking is not None else None,
                         callbacks=config.training.callbacks)
    started = time.perf_counter()
    result = model.fit(plan.X, plan.y, data["X_validation"], data["y_validation"],
                       early_stopping_rounds=plan.early_stopping_rounds,
                       train_metrics=config.training.train_metrics, context=context)
    seconds = time.perf_counter() - started
    model.save(ctx.stage_dir / "model")
    (ctx.stage_dir / "history.json").write_text(json.dumps(result.history))
    metrics = {"train_seconds": seconds, "iterations": float(result.iterations)}
    if result.best_iteration is not None:
        metrics["best_iteration"] = float(result.best_iteration)
    return {
        "outputs": {"model": "model", "history": "history.json"},
        "history": "history.json",
        "artifacts": ["model", "history.json"],
        "metrics": metrics,
        "summary": {"family": config.model.type, "iterations": result.iterations, "best_iteration": result.best_iteration,
                    "stopped_early": result.stopped_early, "seconds": round(seconds, 2),
                    **({"tuned_params": plan.tuned["params"], "retrain_on": plan.tuned["retrain_on"]} if plan.tuned else {})},
    }
