"""Report sections about the model: training curves, evaluation plots, slices, importance, tuning."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import numpy as np

from trainpipe.reports import figures as fig
from trainpipe.reports.folder import RunFolder
from trainpipe.reports.importance import Importance, feature_importance, sample
from trainpipe.reports.view import Figure, Limits, Section, Table

LOWER_IS_BETTER = re.compile(r"loss|rmse|mae|mape|l1$|l2$|error|huber|deviance")
TORCH_FAMILIES = ("torch_mlp", "two_tower")


# -- training ----------------------------------------------------------------------------------------
def monitored_key(folder: RunFolder, history: dict) -> str | None:
    """The history key early stopping watched."""
    family = folder.setting("model.type")
    monitor = folder.setting("model.params.monitor")
    if monitor:
        return monitor
    if family == "two_tower":
        ks = folder.setting("ranking.k") or [10]
        return f"validation_recall_at_{ks[0]}"
    if family in TORCH_FAMILIES:
        return "validation_loss"
    validation = [k for k in history if k.startswith("validation_")]
    return validation[-1] if validation else None  # boosters stop on the last validation metric


def history_groups(history: dict[str, list]) -> dict[str, list[str]]:
    """Split the history keys into the charts the training section draws."""
    groups: dict[str, list[str]] = {"loss": [], "metrics": [], "learning rate": [], "gradient norm": [],
                                    "throughput": [], "other": []}
    for key in history:
        split, _, metric = key.partition("_")
        if key == "lr" or key.endswith(("_lr", "learning_rate")):
            groups["learning rate"].append(key)
        elif "grad_norm" in key:
            groups["gradient norm"].append(key)
        elif key.endswith("_per_s"):
            groups["throughput"].append(key)
        elif split in ("train", "validation") and LOWER_IS_BETTER.search(metric):
            groups["loss"].append(key)
        elif split in ("train", "validation"):
            groups["metrics"].append(key)
        else:
            groups["other"].append(key)
    return {name: keys for name, keys in groups.items() if keys}


def training(folder: RunFolder, limits: Limits) -> Section:
    section = Section("training", "Training")
    manifest = folder.manifest("train")
    if manifest is None:
        section.missing = folder.why_missing("train")
        return section
    summary, metrics = manifest.get("summary", {}), manifest.get("metrics", {})
    history = {k: v for k, v in (folder.json("train", "history.json") or {}).items() if isinstance(v, list) and v}
    family = folder.setting("model.type")
    unit = "epoch" if family in TORCH_FAMILIES else "boosting round" if family in ("xgboost", "lightgbm") else "iteration"
    best = summary.get("best_iteration")
    monitored = monitored_key(folder, history)
    section.facts += [("model family", family), (f"{unit}s", summary.get("iterations")),
                      (f"best {unit}", best + 1 if isinstance(best, int) else "— (no early stopping)"),
                      ("stopped early", summary.get("stopped_early")), ("train time", f"{summary['seconds']} s" if summary.get("seconds") is not None else "—"),
                      ("monitored", monitored or "—")]
    per_s = {k: v for k, v in metrics.items() if k.endswith("_per_s")}
    section.facts += [(k.replace("_", " "), f"{v:,.0f}") for k, v in per_s.items()]
    if summary.get("tuned_params"):
        section.facts.append(("tuned parameters", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                             for k, v in summary["tuned_params"].items())))
    longest = max((len(v) for v in history.values()), default=0)
    if longest < 2:
        section.notes.append(f"learning curves: not recorded ({family} reports no per-{unit} history)")
        return section
    keep = [best] if isinstance(best, int) else []
    for group, keys in history_groups(history).items():
        series = {}
        for key in keys:
            values = np.asarray(history[key], dtype=np.float64)
            idx = fig.thin(len(values), limits.curve_points, keep)
            series[key + (" (monitored)" if key == monitored else "")] = (idx + 1, values[idx])
        log_y = group == "learning rate" and _spans_decades(history, keys)
        section.figures.append(Figure(f"{group.capitalize()} per {unit}", fig.lines(
            series, unit, "value" if group == "metrics" else group, marker=best + 1 if isinstance(best, int) else None,
            marker_label=f"best {unit} {best + 1}" if isinstance(best, int) else "", log_y=log_y),
            wide=len(series) > 4))
    if family in TORCH_FAMILIES:  # what the torch loop can record; boosters have no such per-round values
        for missing in ("learning rate", "gradient norm", "throughput"):
            if missing not in history_groups(history):
                section.notes.append(f"{missing} per {unit}: not recorded")
    return section


def _spans_decades(history: dict, keys: list[str]) -> bool:
    values = np.concatenate([np.asarray(history[k], dtype=np.float64) for k in keys])
    values = values[values > 0]
    return bool(values.size) and values.max() / values.min() > 100


# -- evaluation --------------------------------------------------------------------------------------
def metrics_table(metrics: dict) -> Table:
    names = list(dict.fromkeys([*metrics.get("validation", {}), *metrics.get("test", {})]))
    return Table("Metrics", ["metric", "validation", "test"],
                 [[n, metrics.get("validation", {}).get(n), metrics.get("test", {}).get(n)] for n in names])


def _sampled(y: np.ndarray, scores: np.ndarray, cap: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    rows = sample(len(y), cap, seed)
    if rows is None:
        return y, scores, f"all {len(y):,} test rows"
    return y[rows], scores[rows], f"a seeded sample of {cap:,} of {len(y):,} test rows"


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(fraction positive, mean predicted) per non-empty bin of width 1/bins, as sklearn.calibration's
    `calibration_curve(strategy="uniform")` computes them (a test checks they agree). Written here because
    importing sklearn.calibration costs ~0.5 s (it loads sklearn.svm and linear_model): more than a whole
    report may take inside a run."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    total = np.bincount(ids, minlength=bins)
    filled = total > 0
    positives = np.bincount(ids, weights=y, minlength=bins)
    predicted = np.bincount(ids, weights=p, minlength=bins)
    return positives[filled] / total[filled], predicted[filled] / total[filled]


def _binary_plots(details: dict, y: Any, proba: Any, classes: Any, limits: Limits, seed: int) -> list[Figure]:
    out = []
    roc = {s: (details[s]["roc_curve"]["x"], details[s]["roc_curve"]["y"]) for s in ("validation", "test")
           if "roc_curve" in details.get(s, {})}
    pr = {s: (details[s]["pr_curve"]["x"], details[s]["pr_curve"]["y"]) for s in ("validation", "test")
          if "pr_curve" in details.get(s, {})}
    if roc:
        out.append(Figure("ROC curve", fig.curve(roc, "false positive rate", "true positive rate", diagonal=True)))
    if pr:
        out.append(Figure("Precision-recall curve", fig.curve(pr, "recall", "precision")))
    if "confusion_matrix" in details.get("test", {}):
        out.append(Figure(f"Confusion matrix (test, threshold {details['test'].get('threshold', 0.5):g})",
                          fig.confusion(details["test"]["confusion_matrix"], classes)))
    if y is not None and proba is not None and len(y):
        ys, ps, rows = _sampled(y, proba[:, 1], limits.score_rows, seed)
        if 0 < ys.sum() < len(ys):
            frac, mean = calibration_curve(ys, ps)
            out.append(Figure("Calibration (test)", fig.curve({"model": (mean, frac)}, "mean predicted probability",
                                                               "fraction positive", diagonal=True), caption=rows))
        out.append(Figure("Score distribution per class (test)", fig.histograms(
            {f"true {classes[c]}": ps[ys == c] for c in (0, 1)}, f"P({classes[1]})", limits.histogram_bins,
            value_range=(0.0, 1.0)), caption=rows))
    return out


def _multiclass_plots(details: dict, y: Any, proba: Any, classes: Any, limits: Limits, seed: int) -> list[Figure]:
    from sklearn.metrics import precision_recall_curve, roc_curve

    out = []
    if "confusion_matrix" in details.get("test", {}):
        out.append(Figure("Confusion matrix (test)", fig.confusion(details["test"]["confusion_matrix"], classes)))
    if y is None or proba is None or not len(y):
        return out
    ys, ps, rows = _sampled(y, proba, limits.score_rows, seed)
    roc, pr = {}, {}
    for c, name in enumerate(classes):
        truth = (ys == c).astype(np.int64)
        if 0 < truth.sum() < len(truth):
            fpr, tpr, _ = roc_curve(truth, ps[:, c])
            prec, rec, _ = precision_recall_curve(truth, ps[:, c])
            i, j = fig.thin(len(fpr), limits.curve_points), fig.thin(len(rec), limits.curve_points)
            roc[str(name)], pr[str(name)] = (fpr[i], tpr[i]), (rec[j], prec[j])
    if roc:
        out.append(Figure("ROC curves, one class against the rest (test)",
                          fig.curve(roc, "false positive rate", "true positive rate", diagonal=True), caption=rows))
        out.append(Figure("Precision-recall curves, one class against the rest (test)",
                          fig.curve(pr, "recall", "precision"), caption=rows))
    confidence, correct = ps.max(axis=1), (ps.argmax(axis=1) == ys).astype(np.int64)
    if 0 < correct.sum() < len(correct):
        frac, mean = calibration_curve(correct, confidence)
        out.append(Figure("Calibration of the top class (test)", fig.curve(
            {"model": (mean, frac)}, "predicted probability of the chosen class", "fraction correct", diagonal=True),
            caption=rows))
    true_proba = ps[np.arange(len(ys)), ys]
    out.append(Figure("Probability given to the true class, per class (test)", fig.histograms(
        {str(name): true_proba[ys == c] for c, name in enumerate(classes)}, "probability of the true class",
        limits.histogram_bins, value_range=(0.0, 1.0)), caption=rows))
    return out


def _regression_plots(y: Any, predicted: Any, limits: Limits, seed: int) -> list[Figure]:
    if y is None or predicted is None or not len(y):
        return []
    ys, ps, rows = _sampled(y.astype(np.float64), predicted.astype(np.float64), limits.scatter_points, seed)
    residuals = ys - ps
    all_residuals = y.astype(np.float64) - predicted.astype(np.float64)
    return [Figure("Predicted against actual (test)", fig.scatter(ys, ps, "actual", "predicted", diagonal=True),
                   caption=rows),
            Figure("Residuals against predicted (test)", fig.scatter(ps, residuals, "predicted", "actual − predicted",
                                                                     zero_line=True), caption=rows),
            Figure("Residual distribution (test)", fig.histograms({"residuals": all_residuals}, "actual − predicted",
                                                                  limits.histogram_bins, density=False),
                   caption=f"all {len(y):,} test rows")]


def _ranking_evaluation(folder: RunFolder, section: Section) -> Section:
    metrics = folder.json("evaluate", "metrics.json") or {}
    ks = sorted(folder.setting("ranking.k") or [])
    models = {"model": metrics.get("test", {}), **{b: v.get("test", {}) for b, v in metrics.get("baselines", {}).items()}}
    names = [n for n in metrics.get("test", {}) if n != "users"]
    lift = (metrics.get("lift") or {}).get("test", {})
    section.tables.append(Table("Test metrics: the model and each baseline", ["metric", *models, "lift over popularity"],
                                [[n, *[m.get(n) for m in models.values()], lift.get(f"lift_{n}")] for n in names]))
    section.tables.append(metrics_table({s: metrics.get(s, {}) for s in ("validation", "test")}))
    for metric, title in (("recall", "Recall@K"), ("ndcg", "NDCG@K")):
        series = {name: (ks, [m.get(f"{metric}_at_{k}") for k in ks]) for name, m in models.items()}
        section.figures.append(Figure(f"{title} against K (test)", fig.lines(series, "K", title, markers=True, x_ticks=ks)))
    return section


def evaluation(folder: RunFolder, limits: Limits) -> Section:
    section = Section("evaluation", "Evaluation")
    if not folder.finished("evaluate"):
        section.missing = folder.why_missing("evaluate")
        return section
    summary = (folder.manifest("evaluate") or {}).get("summary", {})
    better = "higher" if summary.get("direction") == "max" else "lower"
    section.facts.append(("primary metric", f"{summary.get('primary_metric')} ({better} is better)"))
    latency = folder.json("evaluate", "latency.json") or {}
    if latency:
        section.facts.append(("latency p99", f"{latency.get('latency_p99_batch_ms', 0):.3g} ms per batch of "
                                             f"{latency.get('latency_batch_rows', 0):.0f} rows, "
                                             f"{latency.get('latency_p99_row_ms', 0):.3g} ms per row"))
    if folder.task == "ranking":
        return _ranking_evaluation(folder, section)
    metrics = folder.json("evaluate", "metrics.json") or {}
    section.tables.append(metrics_table(metrics))
    details = folder.json("evaluate", "details.json") or {}
    classes = [str(c) for c in (details.get("classes") or [])]
    y, scores = folder.array("features", "y_test.npy"), folder.array("evaluate", "test_scores.npy")
    seed = int(folder.setting("seed", 0) or 0)
    if folder.task == "binary":
        section.figures += _binary_plots(details, y, scores, classes or ["0", "1"], limits, seed)
    elif folder.task == "multiclass":
        section.figures += _multiclass_plots(details, y, scores, classes, limits, seed)
    elif folder.task == "regression":
        section.figures += _regression_plots(y, scores, limits, seed)
    if y is None or scores is None:
        section.notes.append("score plots: the test labels or scores are not in the run folder")
    return section


# -- slices, importance, tuning -------------------------------------------------------------------------
def slices(folder: RunFolder) -> Section:
    section = Section("slices", "Slice metrics")
    decision = folder.json("gate", "decision.json")
    if decision is None:
        section.missing = folder.why_missing("gate")
        return section
    rows = decision.get("slices") or []
    if not rows:
        section.notes.append("not measured: no slices configured (gates.slices.columns or gates.slices.numeric)")
        return section
    metric = next((k for k in rows[0] if k not in ("slice", "rows")), "value")
    limit = folder.setting("gates.slices.limit")
    section.tables.append(Table(f"{metric} per slice of the test rows", ["slice", "rows", metric],
                                [[r["slice"], f"{r['rows']:,}", r.get(metric)] for r in rows],
                                note=f"gated: limit {limit}, slices of at least {folder.setting('gates.slices.min_size', 30)} "
                                     "rows" if limit is not None else "reported only (gates.slices.limit is not set)"))
    return section


def importance(folder: RunFolder, limits: Limits) -> Section:
    section = Section("importance", "Feature importance")
    found = feature_importance(folder, limits)
    if not isinstance(found, Importance):  # the reason there are none
        section.notes.append(found)
        return section
    section.facts.append(("method", found.method))
    section.figures.append(Figure(f"Top {len(found.names)} features", fig.bars(found.names, found.values, "importance",
                                                                               errors=found.errors)))
    return section


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def tuning(folder: RunFolder) -> Section:
    section = Section("tuning", "Tuning")
    study = folder.json("tune", "study.json")
    if study is None:
        section.missing = folder.why_missing("tune")
        return section
    section.facts += [("study", study.get("study")), ("storage", study.get("storage")),
                      ("objective", f"{study.get('direction')} {study.get('metric')}"),
                      ("trials", ", ".join(f"{k.lower()} {v}" for k, v in (study.get("trials") or {}).items())),
                      ("best", f"{study.get('best_value'):.5g} (trial {study.get('best_trial')})"),
                      ("stopped", study.get("message") or study.get("stopped_by"))]
    if study.get("best_params"):
        section.tables.append(Table("Best parameters", ["parameter", "value"],
                                    [[k, v] for k, v in study["best_params"].items()]))
    trials_file = folder.file("tune", "trials.csv")
    if trials_file is not None:
        import pandas as pd

        trials = pd.read_csv(trials_file)
        value = "value" if "value" in trials else "values_0"
        done = trials[trials[value].notna()].sort_values("number")
        if len(done):
            values = done[value].to_numpy(dtype=np.float64)
            best = (np.minimum if study.get("direction") == "minimize" else np.maximum).accumulate(values)
            section.figures.append(Figure("Optimization history", fig.trials(
                done["number"].to_numpy(), values, best, done["state"].astype(str).tolist(), study.get("metric", value))))
    image = folder.file("tune", "plots/param_importances.png")
    if image is not None:
        section.figures.append(Figure("Parameter importances (Optuna fANOVA)", image=_png(image)))
    else:
        skipped = (study.get("plots_skipped") or {}).get("param_importances")
        section.notes.append(f"parameter importances: not measured ({skipped or 'tuning.plots is off'})")
    return section
