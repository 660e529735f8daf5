"""Figure specs: valid plotly figures (checked by plotly's own validators), JSON-safe, capped in size."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest

from trainpipe.reports import figures as fig


def valid(spec: dict) -> go.Figure:
    json.dumps(spec, allow_nan=False)  # what the page parses: no NaN, only JSON types
    return go.Figure(spec)  # raises on any property plotly does not know


def test_num_rounds_to_five_digits_and_turns_nan_and_inf_into_null():
    assert fig.num([0.123456789, np.nan, np.inf, 2.0]) == [0.12346, None, None, 2.0]


def test_thin_keeps_at_most_the_points_asked_plus_the_last_and_kept_indices():
    idx = fig.thin(10_000, 100, keep=[4321])
    assert len(idx) <= 102 and idx[0] == 0 and idx[-1] == 9_999 and 4321 in idx and np.all(np.diff(idx) > 0)
    assert fig.thin(50, 100).tolist() == list(range(50))


def test_lines_mark_the_best_iteration_and_centre_a_constant_series():
    spec = fig.lines({"lr": ([1, 2, 3], [0.001, 0.001, 0.001])}, "epoch", "learning rate", marker=2, marker_label="best")
    valid(spec)
    assert spec["layout"]["shapes"][0]["x0"] == 2
    low, high = spec["layout"]["yaxis"]["range"]
    assert low < 0.001 < high and high - low == pytest.approx(0.001)


def test_lines_with_many_series_put_the_legend_beside_the_plot():
    spec = fig.lines({f"s{i}": ([1, 2], [i, i + 1]) for i in range(6)}, "epoch", "value")
    valid(spec)
    assert spec["layout"]["legend"]["orientation"] == "v"


def test_curve_confusion_bars_and_trials_are_valid_plotly():
    valid(fig.curve({"test": ([0, 0.5, 1], [0, 0.8, 1])}, "fpr", "tpr", diagonal=True))
    conf = fig.confusion([[5, 1], [2, 7]], ["no", "yes"])
    valid(conf)
    assert conf["data"][0]["z"] == [[5, 1], [2, 7]] and conf["layout"]["yaxis"]["autorange"] == "reversed"
    valid(fig.bars(["a", "b"], [0.3, np.nan], "importance", errors=[0.01, 0.02]))
    valid(fig.bars(["run1", "run2"], [1.0, 2.0], "rmse", horizontal=False))
    valid(fig.grouped_bars(["x", "y"], {"train": [0.5, 0.5], "test": [0.4, 0.6]}, "share"))
    valid(fig.trials([0, 1, 2], [0.5, 0.7, 0.6], [0.5, 0.7, 0.7], ["COMPLETE", "COMPLETE", "PRUNED"], "roc_auc"))


def test_histograms_carry_bin_heights_not_the_values():
    values = np.random.default_rng(0).random(100_000)
    spec = fig.histograms({"a": values, "b": values[:10]}, "score", 20, value_range=(0.0, 1.0))
    valid(spec)
    first = spec["data"][0]
    assert len(first["x"]) == len(first["y"]) == 20 and sum(first["y"]) == pytest.approx(1.0, abs=1e-3)
    assert first["name"] == "a (100,000)"
    assert len(json.dumps(spec)) < 3_000  # 100k values, a few hundred bytes


def test_scatter_with_diagonal_spans_both_axes():
    spec = fig.scatter([1.0, 2.0, 3.0], [1.5, 2.5, np.nan], "actual", "predicted", diagonal=True)
    valid(spec)
    assert spec["data"][1]["x"] == [1.0, 3.0] and spec["data"][0]["y"][-1] is None


def test_calibration_curve_agrees_with_scikit_learns():
    from sklearn.calibration import calibration_curve as sklearn_curve

    from trainpipe.reports.sections_model import calibration_curve

    rng = np.random.default_rng(1)
    p = np.concatenate([rng.random(5_000), [0.0, 1.0, 0.1, 0.2]])  # bin edges included
    y = (rng.random(len(p)) < p).astype(np.int64)
    ours, theirs = calibration_curve(y, p), sklearn_curve(y, p, n_bins=10)
    np.testing.assert_allclose(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1], theirs[1])
    few = calibration_curve(np.array([0, 1]), np.array([0.05, 0.95]))  # empty bins are left out
    np.testing.assert_allclose(few, ([0.0, 1.0], [0.05, 0.95]))


def test_lines_take_a_style_per_series():
    spec = fig.lines({"a · train_loss": ([1, 2], [1, 0.5]), "a · validation_loss": ([1, 2], [1.1, 0.7])}, "i", "loss",
                     styles={"a · train_loss": {"color": "#123456", "dash": "dot"}})
    valid(spec)
    assert spec["data"][0]["line"] == {"color": "#123456", "width": 2, "dash": "dot"}
    assert spec["data"][1]["line"]["color"] == fig.PALETTE[1]


def test_lines_tick_every_epoch_of_a_short_run_or_at_the_values_given():
    assert fig.lines({"a": ([1, 2, 3], [1, 2, 3])}, "epoch", "v")["layout"]["xaxis"]["dtick"] == 1
    assert "dtick" not in fig.lines({"a": ([5, 10, 20], [1, 2, 3])}, "K", "v")["layout"]["xaxis"]
    spec = fig.lines({"a": ([5, 10, 20], [1, 2, 3])}, "K", "v", x_ticks=[5, 10, 20])
    valid(spec)
    assert spec["layout"]["xaxis"]["tickvals"] == [5, 10, 20]
