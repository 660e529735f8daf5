"""Feature importance for the report: the booster's own total gain, or permutation importance.

Boosters (xgboost, lightgbm, and sklearn estimators with `feature_importances_`) know what each split
gained: reading it costs nothing. Any other model (torch_mlp, linear sklearn models) gets permutation
importance on a capped, seeded sample of the validation split, scored with the run's
primary metric (or the task's default when the primary one cannot be computed per row).
"""

from __future__ import annotations

import json
from typing import Any
from dataclasses import dataclass

import numpy as np

from trainpipe.reports.folder import RunFolder
from trainpipe.reports.view import Limits


@dataclass
class Importance:
    method: str  # what the values mean, shown above the chart
    names: list[str]
    values: list[float]
    errors: list[float] | None = None  # std over permutation repeats


def native(model: Any, family: str) -> tuple[np.ndarray, str] | None:
    """(importance per matrix column, description) read from a fitted booster, or None."""
    if family == "xgboost":
        scores = model.booster.get_score(importance_type="total_gain")  # keys f0, f1, ... (no names given)
        n = model.booster.num_features()
        values = np.zeros(n)
        for key, value in scores.items():
            values[int(key[1:])] = value
        return values, "total gain of the splits on each feature (xgboost)"
    if family == "lightgbm":
        return (np.asarray(model.booster.feature_importance(importance_type="gain"), dtype=np.float64),
                "total gain of the splits on each feature (lightgbm)")
    estimator: Any = getattr(model, "estimator", None)
    if family == "sklearn" and hasattr(estimator, "feature_importances_"):
        return (np.asarray(estimator.feature_importances_, dtype=np.float64),
                f"{type(estimator).__name__}.feature_importances_ (impurity decrease)")
    return None


def _score_sign(metric: str) -> float:
    """+1 when a higher metric is better, -1 otherwise: importances are drops in a higher-is-better score."""
    from trainpipe.evaluation.gates import better

    return 1.0 if better(metric) == "max" else -1.0


PERMUTED_ROWS_PER_CALL = 262_144  # stacked permuted copies predicted in one call (~32 MB of float32 at 32 columns)


def permutation(model: Any, X: np.ndarray, y: np.ndarray, task: str, metric: str, limits: Limits,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over repeats of the score drop when one column is shuffled (Breiman's permutation importance).

    Written here rather than through sklearn.inspection.permutation_importance because that calls the model
    once per column and repeat (97 predictions of 2,000 rows for 32 columns): a torch model pays its per-call
    cost each time, which made this the largest part of the report stage. Here the permuted copies are stacked
    and predicted in a few large calls; each block is then scored on its own, so the result is the same
    statistic (one seeded row permutation per column and repeat, scored with the run's metric).
    """
    from trainpipe.evaluation.gates import score

    sign = _score_sign(metric)
    n, columns = X.shape
    repeats = limits.importance_repeats

    def predicted(matrix: np.ndarray) -> np.ndarray:
        return model.predict(matrix) if task == "regression" else model.predict_proba(matrix)

    baseline = sign * score(task, metric, y, predicted(X))
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(n) for _ in range(columns * repeats)]  # drawn up front: chunking cannot change them
    drops = np.empty((columns, repeats))
    jobs = [(j, r) for j in range(columns) for r in range(repeats)]
    per_call = max(1, PERMUTED_ROWS_PER_CALL // max(n, 1))
    for start in range(0, len(jobs), per_call):
        chunk = jobs[start:start + per_call]
        stacked = np.tile(X, (len(chunk), 1))
        for block, (j, r) in enumerate(chunk):
            stacked[block * n:(block + 1) * n, j] = X[orders[j * repeats + r], j]
        out = predicted(stacked)
        for block, (j, r) in enumerate(chunk):
            drops[j, r] = baseline - sign * score(task, metric, y, out[block * n:(block + 1) * n])
    return drops.mean(axis=1), drops.std(axis=1)


def scoring_metric(task: str, primary: str | None) -> str:
    """The primary metric if it can score any subset of rows, else the task's default."""
    from trainpipe.evaluation.gates import WEIGHTED
    from trainpipe.evaluation.metrics import PRIMARY

    return primary if primary is not None and primary in WEIGHTED[task] else PRIMARY[task][0]


def sample(n: int, cap: int, seed: int) -> np.ndarray | None:
    """Sorted seeded row positions when n exceeds cap, else None (use every row)."""
    if n <= cap:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def feature_importance(folder: RunFolder, limits: Limits) -> Importance | str:
    """The importances of the run's model, or the reason there are none."""
    task = str(folder.task)  # config.yaml always records it
    if task == "ranking":
        return "not applicable: the two-tower model scores user and item ids, not a feature matrix"
    if not folder.finished("train"):
        return folder.why_missing("train")
    info = folder.json("features", "features.json") or {}
    model_dir = folder.path / "train" / "model"
    try:
        family = json.loads((model_dir / "family.json").read_text())["family"]
    except (OSError, ValueError, KeyError):
        return f"no readable model in {model_dir}"
    from trainpipe.models import load_family

    model = load_family(model_dir)
    names = list(info.get("feature_names") or [])
    found = native(model, family)
    if found is not None:
        values, method = found
        errors = None
    else:
        X, y = folder.array("features", "X_validation.npy"), folder.array("features", "y_validation.npy")
        if X is None or y is None or len(y) == 0:
            return "not measured: the validation matrix is not in the features stage folder"
        seed = int(folder.setting("seed", 0) or 0)
        rows = sample(len(y), limits.importance_rows, seed)
        if rows is not None:
            X, y = X[rows], y[rows]
        metric = scoring_metric(task, folder.setting("evaluation.primary_metric"))
        values, errors = permutation(model, X, y, task, metric, limits, seed)
        method = (f"permutation importance: drop in validation {metric} when the column is shuffled "
                  f"({len(y):,} rows, {limits.importance_repeats} repeats)")
    if len(names) != len(values):
        names = [f"feature {i}" for i in range(len(values))]
    order = np.argsort(-np.asarray(values), kind="stable")[: limits.top_features]
    return Importance(method, [names[i] for i in order], [float(values[i]) for i in order],
                      [float(errors[i]) for i in order] if errors is not None else None)
