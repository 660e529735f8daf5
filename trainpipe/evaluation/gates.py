"""Quality gates: test size, absolute thresholds, slice floors and the champion comparison, as pure functions.

Slice and champion metrics come from evaluation/bootstrap.py's weighted metrics, so that one matrix of
bootstrap weights (resamples × rows) scores every resample at once: a paired bootstrap of 1,000
resamples is a few matrix products per block, not 2,000 scikit-learn calls. With unit weights they
equal evaluate's metrics.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from trainpipe.evaluation.bootstrap import WEIGHTED, paired_bootstrap, score
from trainpipe.evaluation.metrics import LOWER_IS_BETTER, METRICS

if TYPE_CHECKING:
    import pandas as pd

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

    enabled: bool = Field(True, description="Score the current champion on this run's test rows and compare (only "
                          "on rows it did not train or validate on when this run's split is not its own: "
                          "docs/registry.md).")
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
    seed: int = Field(0, ge=0, description="Seed of the bootstrap resampling (the decision is reproducible).")
    tolerance: float = Field(1e-6, ge=0, description="Differences within tolerance × max(1, |champion value|) "
                             "count as a tie: re-scoring the champion through its package can move its metric in "
                             "the ninth decimal, so an identical model must not fail max_regression 0 (or win "
                             "promotion) on float noise. Applied to the regression and improvement checks and to "
                             "promotion; the value used is in the decision.")


class GatesConfig(BaseModel):
    """Config section `gates`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_test_rows: int = Field(20, ge=0, description="Fail the gate when the test split has fewer rows (ranking: "
                               "test users) than this: on a handful of rows every metric is noise (4 test rows "
                               "gave test AUC 1.0). A floor against degenerate splits, not a power analysis: below "
                               "20 rows one row moves accuracy by over 5 points, while a 150-row data set like iris "
                               "(23 test rows) still runs; raise it for decisions that matter, 0 turns it off.")
    min: dict[str, float] = Field(default_factory=dict, description="Floors on evaluate's metrics, e.g. "
                                  "{test_roc_auc: 0.8}.")
    max: dict[str, float] = Field(default_factory=dict, description="Ceilings, e.g. {test_rmse: 12.5, "
                                  "latency_p99_row_ms: 0.05}.")
    slices: SliceGates = Field(default_factory=SliceGates)
    champion: ChampionGate = Field(default_factory=ChampionGate)
    beat_baselines: bool = Field(False, description="task ranking: fail the gate unless the model's test primary "
                                 "metric is at least the best baseline's (ranking.baselines, same test users). A "
                                 "retrieval model that loses to PureSVD or most-popular is not worth serving; "
                                 "`trainpipe init --task ranking` turns it on.")


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
    if gates.beat_baselines:
        problems.append(f"gates.beat_baselines: only task ranking scores baselines (task is {task}); remove it")
    sliced = bool(gates.slices.columns or gates.slices.numeric)
    for key, metric, used in (("slices.metric", gates.slices.metric or primary, sliced),
                              ("champion.metric", gates.champion.metric or primary, gates.champion.enabled)):
        if used and metric not in WEIGHTED[task]:
            problems.append(f"gates.{key}: {metric!r} cannot be computed per row weight for {task}; set it to one "
                            f"of {', '.join(WEIGHTED[task])}")
    return problems


def better(metric: str) -> str:
    return "min" if metric in LOWER_IS_BETTER else "max"


def _check(name: str, key: str, value: Any, limit: Any, passed: bool, reason: str) -> dict:
    return {"check": name, "key": key, "value": value, "limit": limit, "passed": bool(passed), "reason": reason}


def size_checks(count: int, minimum: int, unit: str) -> list[dict]:
    """The test set is large enough for its metrics to mean something (no check when minimum is 0)."""
    if not minimum:
        return []
    ok = count >= minimum
    return [_check("test size", "gates.min_test_rows", count, minimum, ok,
                   f"{count} {unit} {'>=' if ok else '<'} gates.min_test_rows {minimum}"
                   + ("" if ok else ": too few for the metrics to mean anything; add data, give split.test a larger "
                                    "share, or lower gates.min_test_rows"))]


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


def baseline_checks(metrics: dict[str, float], metric: str, baselines: list[str], split: str = "test") -> list[dict]:
    """The model's `metric` on `split` is at least every baseline's (flat names `<split>_<metric>` and
    `<split>_<baseline>_<metric>`, as ranking's evaluate writes them); a tie passes."""
    model = metrics.get(f"{split}_{metric}")
    scored = {b: metrics[f"{split}_{b}_{metric}"] for b in baselines if metrics.get(f"{split}_{b}_{metric}") is not None}
    if model is None or not scored:
        return [_check("beat baselines", "gates.beat_baselines", model, None, False,
                       f"{split}_{metric} of the model or of the baselines ({', '.join(baselines) or 'none'}) was not "
                       "measured")]
    best = max(scored, key=lambda b: scored[b])
    ok = model >= scored[best]
    return [_check("beat baselines", "gates.beat_baselines", model, scored[best], ok,
                   f"{split} {metric} {model:.4g} {'>=' if ok else '<'} best baseline {best} {scored[best]:.4g}"
                   + ("" if ok else f": the model loses to {best}; see docs/ranking.md (Defaults on real data) "
                                    "for what to tune, or set gates.beat_baselines: false"))]


def slice_masks(frame: pd.DataFrame, slices: SliceGates) -> list[tuple[str, np.ndarray]]:
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


def slice_checks(task: str, metric: str, y: np.ndarray, scores: np.ndarray, masks: list[tuple[str, np.ndarray]],
                 slices: SliceGates,
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
    """Compare on the same rows, differences within the tolerance counting as ties; returns the comparison
    record and its checks."""
    new, old = score(task, metric, y, challenger, threshold), score(task, metric, y, champion, threshold)
    gain = (new - old) if better(metric) == "max" else (old - new)  # > 0: the challenger is better
    tolerance = config.tolerance * max(1.0, abs(old))
    record = {"metric": metric, "champion_version": champion_version, "challenger": new, "champion": old,
              "difference": new - old, "improvement": gain, "tolerance": tolerance}
    checks = [_check("champion regression", "gates.champion.max_regression", gain, 0.0 - config.max_regression,
                     gain >= -config.max_regression - tolerance,
                     f"{metric} {new:.4g} vs champion v{champion_version} {old:.4g} (improvement {gain:+.4g}, "
                     f"allowed regression {config.max_regression:g}, tolerance {tolerance:.1g})")]
    if config.min_improvement is not None:
        checks.append(_check("champion improvement", "gates.champion.min_improvement", gain, config.min_improvement,
                             gain >= config.min_improvement - tolerance,
                             f"improvement {gain:+.4g} vs required {config.min_improvement:g} "
                             f"(tolerance {tolerance:.1g})"))
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
