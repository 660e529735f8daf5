"""How train uses a finished study: the best parameters over `model.params`, on train or train + validation.

On train + validation there are no held-out rows left to stop on, so the iteration count is the best
trial's (boosting rounds or epochs) and early stopping is off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

# The parameter that sets a family's iteration count.
ITERATIONS = {"xgboost": "n_estimators", "lightgbm": "n_estimators", "torch_mlp": "epochs"}


@dataclass(frozen=True)
class TrainPlan:
    model: object  # ModelConfig
    X: np.ndarray
    y: np.ndarray
    early_stopping_rounds: int | None
    tuned: dict | None  # best_params.json, when a study picked the parameters


def plan(ctx, data: dict) -> TrainPlan:
    """What train fits: without a tune stage, exactly `model` on train as before."""
    config = ctx.config
    tuned_file = ctx.upstream("tune") / "best_params.json"
    if not (config.tuning.enabled and tuned_file.exists()):
        return TrainPlan(config.model, data["X_train"], data["y_train"], config.training.early_stopping_rounds, None)
    tuned = json.loads(tuned_file.read_text())
    params = {**config.model.params, **tuned["params"]}
    X, y, stopping = data["X_train"], data["y_train"], config.training.early_stopping_rounds
    if tuned["retrain_on"] == "train+validation":
        X = np.concatenate([X, data["X_validation"]])
        y = np.concatenate([y, data["y_validation"]])
        name = ITERATIONS.get(config.model.type)
        if name and tuned.get("best_iteration") is not None:
            params[name] = int(tuned["best_iteration"]) + 1
        stopping = None
    return TrainPlan(config.model.model_copy(update={"params": params}), X, y, stopping, tuned)


def lineage(ctx) -> dict[str, str]:
    """Register's lineage tags for a tuned model: which study chose its parameters."""
    study_file = ctx.upstream("tune") / "study.json"
    if not (ctx.config.tuning.enabled and study_file.exists()):
        return {}
    study = json.loads(study_file.read_text())
    return {"trainpipe.optuna_study": study["study"], "trainpipe.optuna_storage": study["storage"],
            "trainpipe.optuna_best_trial": str(study["best_trial"]),
            "trainpipe.optuna_best_value": f"{study['metric']}={study['best_value']:.6g}"}
