"""Quality gates: absolute thresholds, slice floors and the champion comparison, as pure functions.

Metrics here are computed from per-row weights so that one matrix of bootstrap counts (resamples ×
rows) scores every resample at once: a paired bootstrap of 1,000 resamples is a few matrix
products, not 2,000 scikit-learn calls. With unit weights they equal evaluate's metrics.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trainpipe.evaluation.metrics import LOWER_IS_BETTER, METRICS

LATENCY_METRICS = ("latency_p99_row_ms", "latency_p99_batch_ms")


class SliceGates(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[str] = Field(default_factory=list, description="Categorical columns: one slice per value.")
    numeric: dict[str, int] = Field(default_factory=dict, description="Numeric column -> number of quantile "
                                    "buckets, e.g. {tenure: 4}: one slice per bucket.")
    metric: str | None = Field(None, description="Metric computed per slice; default: the primary metric.")
    limit: float | None = Field(None, description="Worst acceptable value in any slice: a floor for "
                                "higher-is-better metrics, a ceiling for lower-is-better ones; null only reports.")
    min_size: int = Field(30, ge=1, description="Slices with fewer test rows are reported but not gated.")


class ChampionGate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Score the current champion on this run's test rows and compare.")
    metric: str | None = Field(None, description="Metric compared; default: the primary metric.")
    max_regression: float = Field(0.0, ge=0, description="The challenger may be worse than the champion by at "
                                  "most this much (absolute, in the metric's units).")
    min_improvement: float | None = Field(None, ge=0, description="If set, the challenger must beat the champion "
                                          "by at least this much.")
    bootstrap_resamples: int = Field(1000, ge=0, description="Paired bootstrap resamples for the CI of the "
                                     "difference; 0 skips it.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the bootstrap interval.")
    require_significant: bool = Field(False, description="Also require the interval to exclude zero on the "
                                      "better side.")
    seed: int = Field(0, description="Seed of the bootstrap resampling (the decision is reproducible).")


class GatesConfig(BaseModel):
    """Config section `gates`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: dict[str, float] = Field(default_factory=dict, description="Floors on evaluate's metrics, e.g. "
                                  "{test_roc_auc: 0.8}.")
    max: dict[str, float] = Field(default_factory=dict, description="Ceilings, e.g. {test_rmse: 12.5, "
                                  "latency_p99_row_ms: 0.05}.")
    slices: SliceGates = Field(default_factory=SliceGates)
    champion: ChampionGate = Field(default_factory=ChampionGate)


def known_metrics(task: str) -> list[str]:
    return [f"{split}_{m}" for split in ("validation", "test") for m in METRICS[task]] + list(LATENCY_METRICS)


def config_problems(task: str, gates: GatesConfig, primary: str) -> list[str]:
    """Names that cannot be gated on, found before any data is read."""
    problems, names = [], known_metrics(task)
    for bound in ("min", "max"):
        for name in getattr(gates, bound):
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"gates.{bound}.{name}: not a {task} metric{hint}; choose one of {', '.join(names)}")
    sliced = bool(gates.slices.columns or gates.slices.numeric)
    for key, metric, used in (("slices.metric", gates.slices.metric or primary, sliced),
                              ("champion.metric", gates.champion.metric or primary, gates.champion.enabled)):
        if used and metric not in WEIGHTED[task]:
            problems.append(f"gates.{key}: {metric!r} cannot be computed per row weight for {task}; set it to one "
                            f"of {', '.join(WEIGHTED[task])}")
    return problems


# -- weighted metrics: W is (resamples, rows) of non-negative weights; each returns (resamples,) ----------
def _mean(W: np.ndarray, values: np.ndarray) -> np.ndarray:
    return (W @ values) / W.sum(axis=1)


def _roc_auc(W, y, p):
    """Weighted AUC with half credit for ties: one sparse product sums the weights of negatives and
    positives per distinct score (8x faster than gathering and reducing the weight matrix)."""
    import scipy.sparse as sp

    uniq, group = np.unique(p, return_inverse=True)
    M = sp.csr_matrix((np.ones(len(y)), (np.arange(len(y)), group * 2 + y.astype(np.int64))),
                      shape=(len(y), 2 * len(uniq)))
    counts = np.asarray(M.T @ W.T).T  # sparse @ dense: scipy's fast path
    neg, pos = counts[:, 0::2], counts[:, 1::2]
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def _binary_counts(W, y, p, threshold):
    pred = p >= threshold
    tp, fp, fn = W @ (pred & (y == 1)), W @ (pred & (y == 0)), W @ (~pred & (y == 1))
    return tp, fp, fn


def _f1(tp, fp, fn):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(2 * tp / (2 * tp + fp + fn))


def _binary(name):
    def fn(W, y, proba, threshold):
        p = proba[:, 1]
        clipped = np.clip(p, 1e-15, 1 - 1e-15)
        if name == "roc_auc":
            return _roc_auc(W, y, p)
        if name == "log_loss":
            return _mean(W, -np.where(y == 1, np.log(clipped), np.log1p(-clipped)))
        if name == "brier":
            return _mean(W, (p - y) ** 2)
        if name == "accuracy":
            return _mean(W, ((p >= threshold) == (y == 1)).astype(float))
        tp, fp, fn_ = _binary_counts(W, y, p, threshold)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"precision": np.nan_to_num(tp / (tp + fp)), "recall": np.nan_to_num(tp / (tp + fn_)),
                    "f1": _f1(tp, fp, fn_)}[name]
    return fn


def _multiclass(name):
    def fn(W, y, proba, threshold):
        k = proba.shape[1]
        pred = proba.argmax(axis=1)
        if name == "accuracy":
            return _mean(W, (pred == y).astype(float))
        if name == "log_loss":
            return _mean(W, -np.log(np.clip(proba[np.arange(len(y)), y], 1e-15, 1)))
        truth, guess = np.eye(k, dtype=bool)[y], np.eye(k, dtype=bool)[pred]
        tp, fp, fn_ = W @ (truth & guess), W @ (~truth & guess), W @ (truth & ~guess)
        f1 = _f1(tp, fp, fn_)
        if name == "f1_macro":
            return f1.mean(axis=1)
        support = W @ truth
        return (f1 * support).sum(axis=1) / support.sum(axis=1)
    return fn


def _regression(name):
    def fn(W, y, pred, threshold):
        err = pred - y
        if name == "rmse":
            return np.sqrt(_mean(W, err ** 2))
        if name == "mae":
            return _mean(W, np.abs(err))
        if name == "mape":
            return _mean(W, np.abs(err) / np.abs(y))
        total = W.sum(axis=1)
        ss_tot = W @ (y ** 2) - (W @ y) ** 2 / total
        return 1 - (W @ err ** 2) / ss_tot
    return fn


class _PerUserMeans(Mapping):
    """task ranking: every compared metric (recall_at_K, ndcg_at_K, hit_rate_at_K, mrr) is a mean over
    users, so the 'scores' passed are the per-user values and a resample's metric is their weighted mean."""

    pattern = re.compile(r"^((recall|ndcg|hit_rate)_at_\d+|mrr)$")

    def __getitem__(self, name):
        if not isinstance(name, str) or not self.pattern.match(name):
            raise KeyError(name)
        return lambda W, y, values, threshold: _mean(W, values)

    def __iter__(self):
        return iter(("recall_at_10", "ndcg_at_10", "hit_rate_at_10", "mrr"))

    def __len__(self):
        return 4


WEIGHTED = {
    "binary": {m: _binary(m) for m in ("roc_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1")},
    "multiclass": {m: _multiclass(m) for m in ("accuracy", "f1_macro", "f1_weighted", "log_loss")},
    "regression": {m: _regression(m) for m in ("rmse", "mae", "r2", "mape")},
    "ranking": _PerUserMeans(),
}


def score(task: str, metric: str, y: np.ndarray, scores: np.ndarray, threshold: float = 0.5,
          weights: np.ndarray | None = None) -> float:
    """One metric value on all rows (or weighted rows): the same number evaluate reports."""
    W = np.ones((1, len(y))) if weights is None else np.asarray(weights, dtype=float)[None, :]
    return float(WEIGHTED[task][metric](W, y, scores, threshold)[0])


def paired_bootstrap(task: str, metric: str, y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, *,
                     resamples: int, confidence: float, seed: int, threshold: float = 0.5,
                     block_cells: int = 4_000_000) -> dict:
    """CI of (challenger - champion) over the same resampled rows, deterministic for a seed."""
    fn, n = WEIGHTED[task][metric], len(y)
    rng = np.random.default_rng(seed)
    diffs = []
    block = max(1, block_cells // max(n, 1))
    for start in range(0, resamples, block):
        W = rng.multinomial(n, np.full(n, 1.0 / n), size=min(block, resamples - start)).astype(float)
        diffs.append(fn(W, y, challenger, threshold) - fn(W, y, champion, threshold))
    d = np.concatenate(diffs) if diffs else np.empty(0)
    d = d[np.isfinite(d)]
    alpha = (1 - confidence) / 2
    low, high = (np.quantile(d, [alpha, 1 - alpha]).tolist() if len(d) else [float("nan"), float("nan")])
    return {"low": low, "high": high, "confidence": confidence, "resamples": resamples, "seed": seed}


def better(metric: str) -> str:
    return "min" if metric in LOWER_IS_BETTER else "max"


def _check(name: str, key: str, value, limit, passed: bool, reason: str) -> dict:
    return {"check": name, "key": key, "value": value, "limit": limit, "passed": bool(passed), "reason": reason}


def threshold_checks(metrics: dict[str, float], gates: GatesConfig) -> list[dict]:
    out = []
    for bound, op in (("min", ">="), ("max", "<=")):
        for name, limit in getattr(gates, bound).items():
            value = metrics.get(name)
            key = f"gates.{bound}.{name}"
            if value is None or np.isnan(value):
                out.append(_check(name, key, value, limit, False, f"{name} was not measured"))
                continue
            ok = value >= limit if bound == "min" else value <= limit
            out.append(_check(name, key, value, limit, ok, f"{name} {value:.4g} {op if ok else ('<' if bound == 'min' else '>')} "
                              f"{limit:g}"))
    return out


def slice_masks(frame, slices: SliceGates) -> list[tuple[str, np.ndarray]]:
    """(label, row mask) per categorical value and per quantile bucket of the test rows."""
    import pandas as pd

    out = []
    for column in slices.columns:
        values = frame[column].astype("string").fillna("<missing>").to_numpy(dtype=object)
        for value in sorted(set(values)):
            out.append((f"{column}={value}", values == value))
    for column, buckets in slices.numeric.items():
        series = pd.to_numeric(frame[column], errors="coerce")
        binned = pd.qcut(series, q=buckets, duplicates="drop")
        for interval in binned.cat.categories:
            out.append((f"{column} in {interval}", (binned == interval).to_numpy()))
        if series.isna().any():
            out.append((f"{column}=<missing>", series.isna().to_numpy()))
    return out


def slice_checks(task: str, metric: str, y: np.ndarray, scores: np.ndarray, masks, slices: SliceGates,
                 threshold: float) -> tuple[list[dict], list[dict]]:
    """Per-slice values (all slices) and the gate checks (slices large enough, when a limit is set)."""
    rows, checks = [], []
    direction = better(metric)
    for label, mask in masks:
        size = int(mask.sum())
        value = score(task, metric, y[mask], scores[mask], threshold) if size else float("nan")
        rows.append({"slice": label, "rows": size, metric: value})
        if slices.limit is None or size < slices.min_size:
            continue
        ok = value >= slices.limit if direction == "max" else value <= slices.limit
        ok = ok and not np.isnan(value)
        checks.append(_check(f"slice {label}", "gates.slices.limit", value, slices.limit, ok,
                             f"{metric} {value:.4g} on {size} rows {'within' if ok else 'beyond'} limit {slices.limit:g}"))
    return rows, checks


def champion_check(task: str, metric: str, y: np.ndarray, challenger: np.ndarray, champion: np.ndarray,
                   config: ChampionGate, threshold: float, champion_version: str) -> tuple[dict, list[dict]]:
    """Compare on the same rows; returns the comparison record and its checks."""
    new, old = score(task, metric, y, challenger, threshold), score(task, metric, y, champion, threshold)
    gain = (new - old) if better(metric) == "max" else (old - new)  # > 0: the challenger is better
    record = {"metric": metric, "champion_version": champion_version, "challenger": new, "champion": old,
              "difference": new - old, "improvement": gain}
    checks = [_check("champion regression", "gates.champion.max_regression", gain, 0.0 - config.max_regression,
                     gain >= -config.max_regression,
                     f"{metric} {new:.4g} vs champion v{champion_version} {old:.4g} (improvement {gain:+.4g}, "
                     f"allowed regression {config.max_regression:g})")]
    if config.min_improvement is not None:
        checks.append(_check("champion improvement", "gates.champion.min_improvement", gain, config.min_improvement,
                             gain >= config.min_improvement,
                             f"improvement {gain:+.4g} vs required {config.min_improvement:g}"))
    if config.bootstrap_resamples:
        ci = paired_bootstrap(task, metric, y, challenger, champion, resamples=config.bootstrap_resamples,
                              confidence=config.confidence, seed=config.seed, threshold=threshold)
        record["ci"] = ci
        if config.require_significant:
            ok = ci["low"] > 0 if better(metric) == "max" else ci["high"] < 0
            checks.append(_check("champion significance", "gates.champion.require_significant",
                                 [ci["low"], ci["high"]], 0.0, ok,
                                 f"{int(config.confidence * 100)}% CI of the difference [{ci['low']:+.4g}, "
                                 f"{ci['high']:+.4g}] {'excludes' if ok else 'includes'} zero on the better side"))
    return record, checks


def metric_ci(task: str, metric: str, y: np.ndarray, scores: np.ndarray, *, resamples: int = 200,
              confidence: float = 0.95, seed: int = 0, threshold: float = 0.5) -> list[float]:
    """Bootstrap interval of one model's metric (the model card's test CIs)."""
    n, rng = len(y), np.random.default_rng(seed)
    W = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)
    values = WEIGHTED[task][metric](W, y, scores, threshold)
    values = values[np.isfinite(values)]
    alpha = (1 - confidence) / 2
    return np.quantile(values, [alpha, 1 - alpha]).tolist() if len(values) else [float("nan")] * 2
