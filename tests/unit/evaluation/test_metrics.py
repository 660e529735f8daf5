"""Metrics per task agree with scikit-learn on known inputs."""

import numpy as np

from trainpipe.evaluation.metrics import EvaluationConfig, binary_metrics, multiclass_metrics, regression_metrics


def test_binary_metrics_at_a_threshold_and_curves():
    y = np.array([0, 0, 1, 1])
    proba = np.column_stack([1 - np.array([0.1, 0.6, 0.4, 0.9]), [0.1, 0.6, 0.4, 0.9]])
    out, extra = binary_metrics(y, proba, threshold=0.5, curve_points=50)
    assert out["roc_auc"] == 0.75 and out["accuracy"] == 0.5
    assert extra["confusion_matrix"] == [[1, 1], [1, 1]]
    out, _ = binary_metrics(y, proba, threshold=0.35, curve_points=50)
    assert out["recall"] == 1.0
    assert len(extra["roc_curve"]["x"]) == len(extra["roc_curve"]["y"])


def test_multiclass_metrics():
    y = np.array([0, 1, 2, 2])
    proba = np.eye(3)[[0, 1, 2, 1]]
    out, extra = multiclass_metrics(y, proba, 3)
    assert out["accuracy"] == 0.75 and np.array(extra["confusion_matrix"]).sum() == 4


def test_regression_metrics_skip_mape_when_a_true_value_is_zero():
    out, _ = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert np.isclose(out["rmse"], np.sqrt(1 / 3)) and "mape" in out
    out, _ = regression_metrics(np.array([0.0, 2.0]), np.array([1.0, 2.0]))
    assert "mape" not in out


def test_default_threshold_is_one_half():
    assert EvaluationConfig().threshold == 0.5


def test_binary_metrics_match_scikit_learn_on_random_scores():
    from sklearn import metrics as m

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p = np.clip(0.3 * y + rng.random(5000) * 0.7, 0, 1)
    p[:50] = 0.5  # ties
    out, extra = binary_metrics(y, np.column_stack([1 - p, p]), threshold=0.5, curve_points=100)
    pred = (p >= 0.5).astype(int)
    assert np.isclose(out["roc_auc"], m.roc_auc_score(y, p))
    assert np.isclose(out["pr_auc"], m.average_precision_score(y, p))
    assert np.isclose(out["log_loss"], m.log_loss(y, p))
    assert np.isclose(out["brier"], m.brier_score_loss(y, p))
    assert np.isclose(out["f1"], m.f1_score(y, pred)) and np.isclose(out["precision"], m.precision_score(y, pred))
    assert np.isclose(out["recall"], m.recall_score(y, pred)) and np.isclose(out["accuracy"], m.accuracy_score(y, pred))
    assert extra["confusion_matrix"] == m.confusion_matrix(y, pred).tolist()


def test_multiclass_log_loss_of_a_float32_softmax_raises_no_warning_and_matches_the_exact_value():
    """torch_mlp's probabilities are a float32 softmax: their rows sum to one only within float32 rounding, and
    sklearn's log_loss warned on every evaluation of such a model."""
    import warnings

    import numpy as np

    from trainpipe.evaluation.metrics import multiclass_metrics

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10)).astype(np.float32)
    proba = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32).astype(np.float64)
    y = rng.integers(0, 10, 500)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = multiclass_metrics(y, proba, 10)[0]["log_loss"]
    exact = -np.mean(np.log(proba[np.arange(500), y] / proba.sum(axis=1)))
    assert abs(value - exact) < 1e-9
