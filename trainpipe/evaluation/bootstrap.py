"""Weighted metrics and the bootstrap: one matrix of resample weights scores every metric of a decision.

A metric here is prepared once from (labels, scores) — per-row terms, the order of the scores — and then
evaluated on a block of weights W (resamples × rows), returning one value per resample. With unit weights
it equals evaluate's metric; with bootstrap weights it is the metric on that resample.

The bootstrap is the Poisson bootstrap: each row gets an independent Poisson(1) weight per resample (the
large-n limit of the multinomial counts of drawing n rows with replacement, and what lets a resample be
drawn without knowing the others). Resample r under seed s is always the same weights, whatever the number
of resamples or the block size, so every metric of one decision — the model-card intervals, or both models
of a paired comparison — is scored on the same resamples, drawn once per block. Weights are float32:
small integers, exact in float32, and half the memory traffic of float64.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

# A prepared metric: (weights block, row sums of the block) -> one value per resample
Prepared = Callable[[np.ndarray, np.ndarray], np.ndarray]

BLOCK_CELLS = 4_000_000  # weights per block (16 MB in float32): bounds the transient memory of a metric


# -- weighted metrics ---------------------------------------------------------------------------------
def _mean_of(values: np.ndarray) -> Prepared:
    values = np.asarray(values, dtype=np.float64)
    return lambda W, total: (W @ values.astype(W.dtype, copy=False)) / total


def _prefix_sums(A: np.ndarray) -> np.ndarray:
    """Row-wise cumulative sums with a leading 0. Bootstrap blocks (float32) hold integer counts: those are
    summed as int32, exact and ~15x faster than numpy's float cumsum (no SIMD for float accumulation)."""
    dtype = np.int32 if A.dtype == np.float32 else A.dtype
    out = np.zeros((len(A), A.shape[1] + 1), dtype=dtype)
    np.cumsum(A, axis=1, dtype=dtype, out=out[:, 1:])
    return out


def _roc_auc(y: np.ndarray, p: np.ndarray) -> Prepared:
    """Weighted AUC, half credit for ties, from one sort of each class's scores.

    For each positive, `lo`/`hi` count the negatives scored below / at most its score (found once by
    binary search). On a resample, the weight of the negatives below a positive is then a prefix sum of
    the negatives' weights in score order, read at `lo`; ties add half the weight between `lo` and `hi`.
    Per block: gathers, one cumulative sum and one weighted sum, no per-resample sort. Both classes are
    taken in score order, so the prefix sums are read in order; the gathers of W read memory in order
    too when the rows are laid out by this score (`by_score`)."""
    neg, pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    neg, pos = neg[np.argsort(p[neg], kind="stable")], pos[np.argsort(p[pos], kind="stable")]
    sorted_neg = p[neg]
    lo, hi = np.searchsorted(sorted_neg, p[pos], "left"), np.searchsorted(sorted_neg, p[pos], "right")
    ties = not np.array_equal(lo, hi)

    def fn(W: np.ndarray, total: np.ndarray) -> np.ndarray:
        below = _prefix_sums(np.take(W, neg, axis=1))
        Wp = np.take(W, pos, axis=1)
        credit = np.take(below, lo, axis=1)
        if ties:
            credit += np.take(below, hi, axis=1)  # below(lo) + below(hi) = 2·below + ties
        else:
            credit *= 2
        with np.errstate(invalid="ignore", divide="ignore"):
            return 0.5 * np.einsum("ij,ij->i", credit, Wp, dtype=np.float64) / (
                Wp.sum(axis=1, dtype=np.float64) * below[:, -1])
    return fn


def by_score(task: str, metrics: Sequence[str], scores: np.ndarray) -> np.ndarray | None:
    """A row order for the bootstrap: by the positive-class score when roc_auc is among the metrics, so
    its gathers are sequential reads. Rows get independent weights, so relabelling them changes nothing
    but speed (5-8x for the AUC); None: keep the order."""
    if task == "binary" and "roc_auc" in metrics:
        return np.argsort(np.asarray(scores)[:, 1], kind="stable")
    return None


def _counts(W: np.ndarray, *masks: np.ndarray) -> list[np.ndarray]:
    return [W @ m.astype(W.dtype) for m in masks]


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(2 * tp / (2 * tp + fp + fn))


def _binary(name: str) -> Callable[..., Prepared]:
    def prepare(y: np.ndarray, proba: np.ndarray, threshold: float) -> Prepared:
        p = proba[:, 1]
        clipped = np.clip(p, 1e-15, 1 - 1e-15)
        if name == "roc_auc":
            return _roc_auc(y, p)
        if name == "log_loss":
            return _mean_of(-np.where(y == 1, np.log(clipped), np.log1p(-clipped)))
        if name == "brier":
            return _mean_of((p - y) ** 2)
        pred, positive = p >= threshold, y == 1
        if name == "accuracy":
            return _mean_of(pred == positive)
        hits = (pred & positive, pred & ~positive, ~pred & positive)

        def fn(W: np.ndarray, total: np.ndarray) -> np.ndarray:
            tp, fp, fn_ = _counts(W, *hits)
            with np.errstate(invalid="ignore", divide="ignore"):
                return {"precision": np.nan_to_num(tp / (tp + fp)), "recall": np.nan_to_num(tp / (tp + fn_)),
                        "f1": _f1(tp, fp, fn_)}[name]
        return fn
    return prepare


def _multiclass(name: str) -> Callable[..., Prepared]:
    def prepare(y: np.ndarray, proba: np.ndarray, threshold: float) -> Prepared:
        k = proba.shape[1]
        pred = proba.argmax(axis=1)
        if name == "accuracy":
            return _mean_of(pred == y)
        if name == "log_loss":
            return _mean_of(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-15, 1)))
        truth, guess = np.eye(k, dtype=bool)[y], np.eye(k, dtype=bool)[pred]

        def fn(W: np.ndarray, total: np.ndarray) -> np.ndarray:
            tp, fp, fn_, support = _counts(W, truth & guess, ~truth & guess, truth & ~guess, truth)
            f1 = _f1(tp, fp, fn_)
            if name == "f1_macro":
                return f1.mean(axis=1)
            return (f1 * support).sum(axis=1) / support.sum(axis=1)
        return fn
    return prepare


def _regression(name: str) -> Callable[..., Prepared]:
    def prepare(y: np.ndarray, pred: np.ndarray, threshold: float) -> Prepared:
        err = pred - y
        if name == "rmse":
            mse = _mean_of(err ** 2)
            return lambda W, total: np.sqrt(mse(W, total))
        if name == "mae":
            return _mean_of(np.abs(err))
        if name == "mape":
            return _mean_of(np.abs(err) / np.abs(y))
        centred = y - y.mean()  # the variance is shift-invariant; centring keeps float32 sums exact enough
        sq_err, sq, lin = (np.asarray(v, dtype=np.float64) for v in (err ** 2, centred ** 2, centred))

        def fn(W: np.ndarray, total: np.ndarray) -> np.ndarray:
            ss_tot = W @ sq.astype(W.dtype) - (W @ lin.astype(W.dtype)) ** 2 / total
            return 1 - (W @ sq_err.astype(W.dtype)) / ss_tot
        return fn
    return prepare


class _PerUserMeans(Mapping[str, Callable[..., Prepared]]):
    """task ranking: every compared metric (recall_at_K, ndcg_at_K, hit_rate_at_K, mrr) is a mean over
    users, so the 'scores' passed are the per-user values and a resample's metric is their weighted mean."""

    pattern = re.compile(r"^((recall|ndcg|hit_rate)_at_\d+|mrr)$")

    def __getitem__(self, name: str) -> Callable[..., Prepared]:
        if not isinstance(name, str) or not self.pattern.match(name):
            raise KeyError(name)
        return lambda y, values, threshold: _mean_of(values)

    def __iter__(self) -> Iterator[str]:
        return iter(("recall_at_10", "ndcg_at_10", "hit_rate_at_10", "mrr"))

    def __len__(self) -> int:
        return 4


# task -> metric -> prepare(y, scores, threshold) -> Prepared
WEIGHTED: dict[str, Mapping[str, Callable[..., Prepared]]] = {
    "binary": {m: _binary(m) for m in ("roc_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1")},
    "multiclass": {m: _multiclass(m) for m in ("accuracy", "f1_macro", "f1_weighted", "log_loss")},
    "regression": {m: _regression(m) for m in ("rmse", "mae", "r2", "mape")},
    "ranking": _PerUserMeans(),
}


def prepare(task: str, metric: str, y: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> Prepared:
    return WEIGHTED[task][metric](np.asarray(y), np.asarray(scores), threshold)


def score(task: str, metric: str, y: np.ndarray, scores: np.ndarray, threshold: float = 0.5,
          weights: np.ndarray | None = None) -> float:
    """One metric value on all rows (or weighted rows), in float64: the same number evaluate reports."""
    W = np.ones((1, len(y))) if weights is None else np.asarray(weights, dtype=np.float64)[None, :]
    return float(prepare(task, metric, y, scores, threshold)(W, W.sum(axis=1))[0])


# -- resampling ---------------------------------------------------------------------------------------
def _poisson_table() -> np.ndarray:
    """Poisson(1) by inverse CDF on a 16-bit uniform: entry u is the count whose CDF interval holds
    (u + 0.5) / 2**16. Hand-written because numpy's Poisson sampler costs ~30x more per draw (1.2 s for
    200 × 150k); each probability is within 2**-16 of Poisson's (counts of 9 or more, p ≈ 1e-6, become 8)."""
    k = np.arange(20)
    pmf = np.exp(-1.0) / np.cumprod(np.maximum(k, 1)).astype(np.float64)
    return np.searchsorted(np.cumsum(pmf) * 65536, np.arange(65536) + 0.5).astype(np.float32)


POISSON = _poisson_table()


def resample_weights(n: int, seed: int, start: int, stop: int) -> np.ndarray:
    """Weights of resamples start..stop-1 (float32, rows × n): row r is words r·w..(r+1)·w of one PCG64
    stream seeded with `seed` (w = n/4 words of four 16-bit uniforms), reached by `advance`, so a row never
    depends on how many resamples were asked for or how they were blocked."""
    words = -(-n // 4)
    bits = np.random.PCG64(seed)
    bits.advance(start * words)
    raw = bits.random_raw((stop - start) * words).view(np.uint16).reshape(stop - start, 4 * words)[:, :n]
    return np.take(POISSON, raw)


def weight_blocks(n: int, seed: int, resamples: int, block_cells: int = BLOCK_CELLS) -> Iterator[np.ndarray]:
    rows = max(1, block_cells // max(n, 1))
    for start in range(0, resamples, rows):
        yield resample_weights(n, seed, start, min(start + rows, resamples))


def bootstrap_values(resamples: int, seed: int, n: int, metrics: Sequence[Prepared]) -> list[np.ndarray]:
    """Each prepared metric on every resample (same weights for all of them): one array per metric."""
    out: list[list[np.ndarray]] = [[] for _ in metrics]
    for W in weight_blocks(n, seed, resamples):
        total = W.sum(axis=1, dtype=np.float64).astype(np.float32)
        for values, fn in zip(out, metrics):
            values.append(np.asarray(fn(W, total), dtype=np.float64))
    return [np.concatenate(v) if v else np.empty(0) for v in out]


def interval(values: np.ndarray, confidence: float) -> list[float]:
    values = values[np.isfinite(values)]
    alpha = (1 - confidence) / 2
    return np.quantile(values, [alpha, 1 - alpha]).tolist() if len(values) else [float("nan")] * 2


def paired_bootstrap(task: str, metric: str, y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, *,
                     resamples: int, confidence: float, seed: int, threshold: float = 0.5) -> dict:
    """CI of (challenger - champion) over the same resampled rows, deterministic for a seed."""
    order = by_score(task, [metric], challenger)
    if order is not None:
        y, challenger, champion = y[order], challenger[order], champion[order]
    new, old = bootstrap_values(resamples, seed, len(y), [prepare(task, metric, y, challenger, threshold),
                                                         prepare(task, metric, y, champion, threshold)])
    low, high = interval(new - old, confidence)
    return {"low": low, "high": high, "confidence": confidence, "resamples": resamples, "seed": seed}


def metric_cis(task: str, metrics: Sequence[str], y: np.ndarray, scores: np.ndarray, *, resamples: int = 200,
               confidence: float = 0.95, seed: int = 0, threshold: float = 0.5) -> dict[str, list[float]]:
    """Bootstrap intervals of one model's metrics (the model card's test CIs), all on the same resamples."""
    names = [m for m in metrics if m in WEIGHTED[task]]
    order = by_score(task, names, scores)
    if order is not None:
        y, scores = y[order], scores[order]
    values = bootstrap_values(resamples, seed, len(y), [prepare(task, m, y, scores, threshold) for m in names])
    return {m: interval(v, confidence) for m, v in zip(names, values)}
