"""Plotly figure specs as plain dicts ({"data": [...], "layout": {...}}), drawn in the page by plotly.js.

Plain dicts rather than plotly.graph_objects: building and validating a graph object costs ~10 ms a
figure in Python, a dict nothing, and the report's time budget is a fraction of a second
(docs/monitoring.md). The tests validate every spec with plotly.graph_objects instead.
Numbers are rounded to 5 significant digits and NaN becomes null (JSON has no NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def num(values: Any) -> list[float | None]:
    """A short JSON list: 5 significant digits, None for NaN/inf (capped inputs only: never a whole table)."""
    out = []
    for v in np.asarray(values, dtype=np.float64).ravel().tolist():
        out.append(float(f"{v:.5g}") if math.isfinite(v) else None)
    return out


def thin(n: int, points: int, keep: Sequence[int] = ()) -> np.ndarray:
    """At most `points` evenly spaced indices of range(n), always with the last one and any in `keep`."""
    if n <= points:
        return np.arange(n)
    idx = np.linspace(0, n - 1, num=points).round().astype(int)
    return np.unique(np.concatenate([idx, [n - 1], [k for k in keep if 0 <= k < n]]).astype(int))


def layout(x: str | None = None, y: str | None = None, *, height: int = 320, **extra: Any) -> dict:
    axis = {"gridcolor": "#e8e8e8", "zeroline": False, "automargin": True}
    out: dict[str, Any] = {"height": height, "margin": {"l": 55, "r": 15, "t": 20, "b": 45}, "paper_bgcolor": "white",
           "plot_bgcolor": "white", "font": {"size": 12}, "legend": {"orientation": "h", "y": -0.22},
           "xaxis": {**axis, "title": {"text": x or ""}}, "yaxis": {**axis, "title": {"text": y or ""}}}
    for key, value in extra.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _line(name: str, x: Any, y: Any, i: int, **extra: Any) -> dict:
    return {"type": "scatter", "mode": "lines", "name": name, "x": num(x), "y": num(y),
            "line": {"color": PALETTE[i % len(PALETTE)], "width": 2}, **extra}


def _diagonal(lo: float = 0.0, hi: float = 1.0) -> dict:
    return {"type": "scatter", "mode": "lines", "name": "chance" if (lo, hi) == (0.0, 1.0) else "y = x",
            "x": [lo, hi], "y": [lo, hi], "line": {"color": "#999", "dash": "dash", "width": 1}, "hoverinfo": "skip"}


def lines(series: dict[str, tuple], x: str, y: str, *, marker: float | None = None, marker_label: str = "",
          log_y: bool = False, markers: bool = False, styles: dict[str, dict] | None = None,
          x_ticks: list | None = None) -> dict:
    """One line per series name: {name: (x values, y values)}; a dashed vertical line at `marker`;
    `styles` sets a series' line ({"color": ..., "dash": ...}) instead of the next palette colour."""
    data = [_line(name, xs, ys, i, **({"mode": "lines+markers"} if markers else {}))
            for i, (name, (xs, ys)) in enumerate(series.items())]
    for trace in data:
        trace["line"].update((styles or {}).get(trace["name"], {}))
    extra: dict = {"legend": {"orientation": "v", "x": 1.02, "y": 1}} if len(data) > 4 else {}
    xs = np.unique(np.concatenate([np.asarray(x_, dtype=np.float64) for x_, _ in series.values()])) if series \
        else np.zeros(0)
    if x_ticks is not None:
        extra["xaxis"] = {"tickvals": list(x_ticks)}
    elif 1 < xs.size <= 20 and np.array_equal(xs, np.arange(xs[0], xs[0] + xs.size)):
        extra["xaxis"] = {"dtick": 1}  # a few epochs: no tick at 1.5
    ys = np.concatenate([np.asarray(y_, dtype=np.float64) for _, y_ in series.values()]) if series else np.zeros(0)
    ys = ys[np.isfinite(ys)]
    if ys.size and ys.min() == ys.max() and not log_y:  # a constant (e.g. the learning rate): centre it
        half = abs(ys[0]) / 2 or 1.0
        extra["yaxis"] = {"range": [ys[0] - half, ys[0] + half]}
    if marker is not None:
        extra["shapes"] = [{"type": "line", "x0": marker, "x1": marker, "yref": "paper", "y0": 0, "y1": 1,
                            "line": {"color": "#555", "dash": "dot", "width": 1}}]
        extra["annotations"] = [{"x": marker, "yref": "paper", "y": 1, "text": marker_label, "showarrow": False,
                                 "xanchor": "right", "yanchor": "top", "font": {"size": 11, "color": "#555"}}]
    if log_y:
        extra["yaxis"] = {"type": "log"}
    return {"data": data, "layout": layout(x, y, **extra)}


def curve(curves: dict[str, tuple], x: str, y: str, *, diagonal: bool = False) -> dict:
    """ROC, PR or calibration curves: {name: (x, y)} on the unit square."""
    data = [_line(name, xs, ys, i) for i, (name, (xs, ys)) in enumerate(curves.items())]
    if diagonal:
        data.append(_diagonal())
    return {"data": data, "layout": layout(x, y, xaxis={"range": [0, 1]}, yaxis={"range": [0, 1.02]})}


def confusion(matrix: Any, labels: list[str]) -> dict:
    """Counts with the true class on rows (top to bottom) and the predicted class on columns."""
    z = np.asarray(matrix, dtype=np.int64)
    names = [str(label) for label in labels]
    return {"data": [{"type": "heatmap", "z": z.tolist(), "x": names, "y": names, "colorscale": "Blues", "reversescale": True,
                      "texttemplate": "%{z:,d}", "showscale": False, "hovertemplate": "true %{y}<br>predicted %{x}<br>"
                      "%{z:,d} rows<extra></extra>"}],
            "layout": layout("predicted", "true", height=max(280, 60 + 40 * len(names)),
                             xaxis={"type": "category", "gridcolor": "rgba(0,0,0,0)"},
                             yaxis={"type": "category", "autorange": "reversed", "gridcolor": "rgba(0,0,0,0)"})}


def histograms(groups: dict[str, np.ndarray], x: str, bins: int, *, value_range: tuple[float, float] | None = None,
               density: bool = True) -> dict:
    """Overlaid histograms, counted with numpy here (the page carries bin heights, not the values)."""
    finite = [v[np.isfinite(v)] for v in groups.values()]
    if value_range is None:
        values = np.concatenate(finite) if finite else np.zeros(1)
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        value_range = (lo, hi if hi > lo else lo + 1.0)
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    centers, width = (edges[:-1] + edges[1:]) / 2, float(edges[1] - edges[0])
    data = []
    for i, (name, values) in enumerate(zip(groups, finite)):
        counts, _ = np.histogram(values, bins=edges)
        heights = counts / max(counts.sum(), 1) if density else counts
        data.append({"type": "bar", "name": f"{name} ({len(values):,})", "x": num(centers), "y": num(heights),
                     "width": width, "opacity": 0.55, "marker": {"color": PALETTE[i % len(PALETTE)]}})
    return {"data": data, "layout": layout(x, "share of rows" if density else "rows", barmode="overlay", bargap=0)}


def scatter(x_values: Any, y_values: Any, x: str, y: str, *, diagonal: bool = False, zero_line: bool = False) -> dict:
    xs, ys = np.asarray(x_values, dtype=np.float64), np.asarray(y_values, dtype=np.float64)
    data = [{"type": "scatter", "mode": "markers", "name": f"{len(xs):,} test rows", "x": num(xs), "y": num(ys),
             "marker": {"size": 4, "opacity": 0.5, "color": PALETTE[0]}}]
    finite = np.concatenate([xs[np.isfinite(xs)], ys[np.isfinite(ys)]]) if diagonal else xs[np.isfinite(xs)]
    if diagonal and finite.size:
        data.append(_diagonal(float(finite.min()), float(finite.max())))
    extra: dict[str, Any] = {"yaxis": {"zeroline": True, "zerolinecolor": "#999"}} if zero_line else {}
    return {"data": data, "layout": layout(x, y, **extra)}


def bars(names: list[str], values: Any, x: str, *, horizontal: bool = True, errors: Any = None) -> dict:
    """Bars from top to bottom in the given order (horizontal), e.g. feature importances."""
    trace: dict[str, Any] = {"type": "bar", "orientation": "h" if horizontal else "v", "marker": {"color": PALETTE[0]},
             "x": num(values) if horizontal else [str(n) for n in names],
             "y": [str(n) for n in names] if horizontal else num(values)}
    if errors is not None:
        trace["error_x" if horizontal else "error_y"] = {"type": "data", "array": num(errors), "visible": True}
    height = max(240, 40 + 22 * len(names)) if horizontal else 320
    extra: dict[str, Any] = {"yaxis": {"autorange": "reversed", "type": "category"}} if horizontal else {}
    return {"data": [trace], "layout": layout(x if horizontal else None, None if horizontal else x, height=height,
                                              **extra)}


def grouped_bars(categories: list[str], series: dict[str, list], y: str, *, stacked: bool = False) -> dict:
    """One bar per category and series: {series name: values in category order}."""
    data = [{"type": "bar", "name": str(name), "x": [str(c) for c in categories], "y": num(values),
             "marker": {"color": PALETTE[i % len(PALETTE)]}} for i, (name, values) in enumerate(series.items())]
    return {"data": data, "layout": layout(None, y, barmode="stack" if stacked else "group",
                                           xaxis={"type": "category"})}


def trials(numbers: Any, values: Any, best: Any, states: list[str], metric: str) -> dict:
    """Optimization history: each finished trial's value and the best value so far."""
    numbers, values, state_of = np.asarray(numbers), np.asarray(values, dtype=np.float64), np.asarray(states)
    data = []
    for i, state in enumerate(sorted(set(state_of.tolist()))):
        mask = state_of == state
        data.append({"type": "scatter", "mode": "markers", "name": f"{state.lower()} trials",
                     "x": num(numbers[mask]), "y": num(values[mask]),
                     "marker": {"size": 7, "color": PALETTE[i % len(PALETTE)], "opacity": 0.8}})
    data.append({"type": "scatter", "mode": "lines", "name": "best so far", "x": num(numbers), "y": num(best),
                 "line": {"shape": "hv", "color": "#d62728", "width": 2}})
    return {"data": data, "layout": layout("trial", metric)}
