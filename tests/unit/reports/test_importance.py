"""Permutation importance: the statistic is right and does not depend on how the copies are batched."""

from __future__ import annotations

import numpy as np
import pytest

from trainpipe.reports import importance
from trainpipe.reports.view import Limits


class FirstColumnModel:
    """Scores rows by their first column only; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.calls += 1
        p = 1.0 / (1.0 + np.exp(-X[:, 0]))
        return np.column_stack([1 - p, p])


def data(rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 5)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=rows) > 0).astype(np.int64)
    return X, y


def test_only_the_column_the_model_reads_matters() -> None:
    X, y = data()
    mean, std = importance.permutation(FirstColumnModel(), X, y, "binary", "roc_auc", Limits(importance_repeats=3), 1)
    assert mean[0] > 0.2
    assert np.all(mean[1:] == 0) and np.all(std[1:] == 0)


def test_stacked_calls_give_the_same_importances_as_one_call_per_column(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y = data()
    limits = Limits(importance_repeats=2)
    batched = FirstColumnModel()
    together = importance.permutation(batched, X, y, "binary", "roc_auc", limits, 7)
    monkeypatch.setattr(importance, "PERMUTED_ROWS_PER_CALL", 1)  # one permuted copy per call
    single = FirstColumnModel()
    apart = importance.permutation(single, X, y, "binary", "roc_auc", limits, 7)
    assert batched.calls == 2 and single.calls == 1 + 5 * 2  # the baseline, then the copies
    np.testing.assert_array_equal(together[0], apart[0])
    np.testing.assert_array_equal(together[1], apart[1])


def test_lower_is_better_metrics_still_give_positive_importance() -> None:
    X, y = data()
    mean, _ = importance.permutation(FirstColumnModel(), X, y, "binary", "log_loss", Limits(importance_repeats=2), 3)
    assert mean[0] > 0
