"""Metrics per task, computed with scikit-learn on whole arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

METRICS = {
    "binary": ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1"),
    "multiclass": ("accuracy", "f1_macro", "f1_weighted", "log_loss"),
    "regression": ("rmse", "mae", "r2", "mape"),
}
LOWER_IS_BETTER = ("rmse", "mae", "mape", "log_loss", "brier")
PRIMARY = {"binary": ("roc_auc", "max"), "multiclass": ("f1_macro", "max"), "regression": ("rmse", "min"),
           "ranking": ("recall_at_10", "max")}
# ranking metrics are named per cut-off in ranking.k (trainpipe/ranking/config.py decides); these are the defaults
METRICS["ranking"] = ("recall_at_10", "ndcg_at_10", "hit_rate_at_10", "mrr")


class EvaluationConfig(BaseModel):
    """Config section `evaluation`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(0.5, gt=0, lt=1, description="Binary: probability at or above which a row is positive.")
    curve_points: int = Field(200, ge=10, description="Most points kept per ROC/PR curve.")
    primary_metric: str | None = Field(None, description="Headline metric; default roc_auc, f1_macro or rmse by task.")
    latency_batch_rows: int = Field(256, ge=1, description="Rows per timed prediction batch (latency_p99_* metrics).")
    latency_batches: int = Field(50, ge=1, description="Timed batches; p99 over them gives latency_p99_batch_ms and, "
                                 "per row, latency_p99_row_ms.")


def primary_metric(task: str, config: EvaluationConfig) -> tuple[str, str]:
    if config.primary_metric:
        return config.primary_metric, "min" if config.primary_metric in LOWER_IS_BETTER else "max"
    return PRIMARY[task]


def _thin(x: np.ndarray, y: np.ndarray, t: np.ndarray, points: int) -> dict:
    keep = np.unique(np.linspace(0, len(x) - 1, num=min(points, len(x))).round().astype(int))
    return {"x": x[keep].tolist(), "y": y[keep].tolist(), "thresholds": np.nan_to_num(t[np.minimum(keep, len(t) - 1)],
                                                                                      posinf=1.0).tolist()}


def binary_metrics(y: np.ndarray, proba: np.ndarray, threshold: float, curve_points: int) -> tuple[dict, dict]:
    from sklearn import metrics as m

    p = proba[:, 1]
    pred = (p >= threshold).astype(np.int64)
    # One confusion matrix gives every threshold metric: sklearn's per-metric calls each re-validate
    # and recount the inputs, which costs ~0.25 s per split on 150k rows.
    tn, fp, fn, tp = np.bincount(2 * y.astype(np.int64) + pred, minlength=4).tolist()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    out = {
        "accuracy": (tp + tn) / len(y),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "log_loss": float(-np.mean(np.where(y == 1, np.log(clipped), np.log1p(-clipped)))),
        "brier": float(np.mean((p - y) ** 2)),
    }
    extras = {"confusion_matrix": [[tn, fp], [fn, tp]], "threshold": threshold}
    if 0 < tp + fn < len(y):  # both classes present
        fpr, tpr, t = m.roc_curve(y, p)
        prec, rec, t2 = m.precision_recall_curve(y, p)
        out["roc_auc"] = float(m.auc(fpr, tpr))
        out["pr_auc"] = float(-np.sum(np.diff(rec) * prec[:-1]))  # average precision, as sklearn defines it
        extras["roc_curve"] = _thin(fpr, tpr, t, curve_points)
        extras["pr_curve"] = _thin(rec[::-1], prec[::-1], t2[::-1], curve_points)
    return {k: float(v) for k, v in out.items()}, extras


def multiclass_metrics(y: np.ndarray, proba: np.ndarray, n_classes: int) -> tuple[dict, dict]:
    from sklearn import metrics as m

    pred = proba.argmax(axis=1)
    labels = list(range(n_classes))
    out = {
        "accuracy": float(m.accuracy_score(y, pred)),
        "f1_macro": float(m.f1_score(y, pred, average="macro", labels=labels, zero_division=0)),
        "f1_weighted": float(m.f1_score(y, pred, average="weighted", labels=labels, zero_division=0)),
        "log_loss": float(m.log_loss(y, _rows_summing_to_one(proba), labels=labels)),
    }
    return out, {"confusion_matrix": m.confusion_matrix(y, pred, labels=labels).tolist()}


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> tuple[dict, dict]:
    from sklearn import metrics as m

    out = {
        "rmse": float(np.sqrt(m.mean_squared_error(y, pred))),
        "mae": float(m.mean_absolute_error(y, pred)),
        "r2": float(m.r2_score(y, pred)),
    }
    if np.all(y != 0):  # MAPE is undefined when a true value is zero
        out["mape"] = float(m.mean_absolute_percentage_error(y, pred))
    return out, {}


def _rows_summing_to_one(proba: np.ndarray) -> np.ndarray:
    """Clipped probabilities whose rows sum to one in float64: a float32 softmax (torch_mlp) sums to 1 only within
    float32 rounding, which sklearn's log_loss warns about once per call at float64's tolerance."""
    clipped = np.clip(np.asarray(proba, dtype=np.float64), 1e-15, 1)
    return clipped / clipped.sum(axis=1, keepdims=True)


def model_scores(task: str, model: Any, X: np.ndarray) -> np.ndarray:
    """What the metrics score: predictions for regression, class probabilities otherwise (evaluate saves these
    as test_scores.npy, so the test rows are predicted once)."""
    return model.predict(X) if task == "regression" else model.predict_proba(X)


def metrics_from_scores(task: str, y: np.ndarray, scores: np.ndarray, n_classes: int,
                        config: EvaluationConfig) -> tuple[dict, dict]:
    """The metrics of scores already predicted (regression values or probabilities): evaluate's one prediction
    of the test rows, or a streamed split's scores gathered batch by batch."""
    if task == "regression":
        return regression_metrics(y, scores)
    if task == "binary":
        return binary_metrics(y, scores, config.threshold, config.curve_points)
    return multiclass_metrics(y, scores, n_classes)


def compute_metrics(task: str, y: np.ndarray, model: Any, X: np.ndarray, n_classes: int,
                    config: EvaluationConfig) -> tuple[dict, dict]:
    return metrics_from_scores(task, y, model_scores(task, model, X), n_classes, config)


def measure_latency(model: Any, X: np.ndarray, task: str, batch_rows: int, batches: int) -> dict[str, float]:
    """p99 prediction time per batch and per row, timed on whole batches (a Python call per row would
    measure the interpreter, not the model). Times the model on the preprocessed matrix."""
    import time

    if len(X) == 0:
        return {}
    rows = min(batch_rows, len(X))
    predict = model.predict if task == "regression" else model.predict_proba
    predict(X[:rows])  # warm-up: first-call allocations are not steady-state latency
    starts = (np.arange(batches) * rows) % max(len(X) - rows + 1, 1)
    seconds = np.empty(batches)
    for i, start in enumerate(starts):
        began = time.perf_counter()
        predict(X[start:start + rows])
        seconds[i] = time.perf_counter() - began
    return {"latency_p99_batch_ms": float(np.percentile(seconds, 99) * 1e3),
            "latency_p99_row_ms": float(np.percentile(seconds / rows, 99) * 1e3), "latency_batch_rows": float(rows)}
