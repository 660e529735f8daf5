"""Sections of the `runs compare --html` page: the runs, their metrics, learning curves overlaid, and
the parameters that differ. Metrics and parameters come from MLflow (`runs.compare_runs`); learning
curves from each run's folder when this machine can read it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trainpipe.reports import figures as fig
from trainpipe.reports.sections_model import history_groups
from trainpipe.reports.view import Figure, Limits, Section, Table

SKIPPED_METRICS = ("seconds", "latency", "rows", "iteration", "data_", "users", "gate_passed")


def _history(run: dict) -> dict | None:
    if not run.get("run_dir"):
        return None
    try:
        history = json.loads((Path(run["run_dir"]) / "train" / "history.json").read_text())
    except (OSError, ValueError):
        return None
    return {k: v for k, v in history.items() if isinstance(v, list) and len(v) > 1}


def runs_section(comparison: dict) -> Section:
    rows = [[r["label"], r["status"], r.get("task"), r.get("model"), r.get("mlflow_run_id"), r.get("run_dir") or "—"]
            for r in comparison["runs"]]
    return Section("runs", "Runs", tables=[Table("Runs compared", ["run", "status", "task", "model", "MLflow run",
                                                                   "run folder"], rows)])


def metrics_section(comparison: dict) -> Section:
    labels = [r["label"] for r in comparison["runs"]]
    metrics = comparison["metrics"]
    section = Section("metrics", "Metrics")
    section.tables.append(Table("Metrics side by side", ["metric", *labels], [[n, *v] for n, v in metrics.items()]))
    headline = {n: v for n, v in metrics.items() if n.startswith("test_") and not any(s in n for s in SKIPPED_METRICS)
                and any(x is not None for x in v)}
    bounded = {n: v for n, v in headline.items() if all(x is None or 0 <= x <= 1 for x in v)}
    if bounded:
        names = list(bounded)
        section.figures.append(Figure("Test metrics between 0 and 1", wide=len(bounded) > 4, spec=fig.grouped_bars(
            [n.removeprefix("test_") for n in names],
            {label: [bounded[n][i] for n in names] for i, label in enumerate(labels)}, "value")))
    for name, values in headline.items():
        if name not in bounded:
            section.figures.append(Figure(name, fig.bars(labels, [np.nan if v is None else v for v in values], name,
                                                         horizontal=False)))
    return section


def curves_section(comparison: dict, limits: Limits) -> Section:
    section = Section("curves", "Learning curves")
    histories = {r["label"]: _history(r) for r in comparison["runs"]}
    for label, history in histories.items():
        if history is None:
            section.notes.append(f"{label}: no learning curves (its run folder is not readable here or it has no "
                                 "per-iteration history)")
    found = {label: h for label, h in histories.items() if h}
    if not found:
        return section
    groups: dict[str, set[str]] = {}
    for history in found.values():
        for group, keys in history_groups(history).items():
            groups.setdefault(group, set()).update(keys)
    for group, members in groups.items():
        series, styles = {}, {}
        for i, (label, history) in enumerate(found.items()):  # one colour per run, train dotted
            for key in sorted(members):
                if key in history:
                    values = np.asarray(history[key], dtype=np.float64)
                    idx = fig.thin(len(values), limits.curve_points)
                    name = f"{label} · {key}"
                    series[name] = (idx + 1, values[idx])
                    styles[name] = {"color": fig.PALETTE[i % len(fig.PALETTE)],
                                    "dash": "dot" if key.startswith("train_") else "solid"}
        section.figures.append(Figure(f"{group.capitalize()} per iteration",
                                      fig.lines(series, "iteration", group, styles=styles), wide=True))
    return section


def params_section(comparison: dict) -> Section:
    labels = [r["label"] for r in comparison["runs"]]
    differ = comparison["params_that_differ"]
    section = Section("params", "Parameters that differ")
    if differ:
        section.tables.append(Table("Parameters that differ", ["parameter", *labels], [[n, *v] for n, v in differ.items()]))
    else:
        section.notes.append("every logged parameter is the same in these runs")
    return section


def comparison_sections(comparison: dict, limits: Limits) -> list[Section]:
    return [runs_section(comparison), metrics_section(comparison), curves_section(comparison, limits),
            params_section(comparison)]
