"""The boosters' own parts: metric names mapped to trainpipe's, and the per-round progress line."""

import importlib

import pytest

from tests.unit.models.test_contract import make_data
from trainpipe.models import ModelConfig, build_family
from trainpipe.models.gbdt_rounds import RoundProgress, metric_key


def test_library_metric_names_become_trainpipe_names():
    assert metric_key("validation", "logloss") == metric_key("validation", "binary_logloss") == "validation_log_loss"
    assert metric_key("validation", "mlogloss") == metric_key("validation", "multi_logloss") == "validation_log_loss"
    assert metric_key("validation", "auc") == "validation_roc_auc" and metric_key("train", "aucpr") == "train_pr_auc"
    assert metric_key("validation", "l2") == "validation_mse" and metric_key("validation", "rmse") == "validation_rmse"
    assert metric_key("validation", "l1") == "validation_mae"
    assert metric_key("validation", "tweedie-nloglik@1.5") == "validation_tweedie-nloglik@1.5"  # no equivalent: kept


@pytest.mark.parametrize("family, params, task, expected", [
    ("xgboost", {"n_estimators": 5, "eval_metric": "auc"}, "binary", "validation_roc_auc"),
    ("lightgbm", {"n_estimators": 5, "metric": "auc", "min_child_samples": 5}, "binary", "validation_roc_auc"),
    ("lightgbm", {"n_estimators": 5, "metric": "l2", "min_child_samples": 5}, "regression", "validation_mse"),
    ("lightgbm", {"n_estimators": 5, "min_child_samples": 5}, "multiclass", "validation_log_loss"),
])
def test_a_chosen_eval_metric_is_recorded_under_evaluates_name(family, params, task, expected):
    X, y, Xv, yv = make_data(task)
    model = build_family(ModelConfig(type=family, params=params), task, 3 if task == "multiclass" else 2, 0, 1)
    reported = []
    result = model.fit(X, y, Xv, yv, report=lambda step, values: reported.append(set(values)) or False)
    assert list(result.history) == [expected] and reported[0] == {expected}


def test_round_progress_keeps_the_best_value_in_the_metrics_direction():
    losses = RoundProgress(False, "xgboost", 10)
    for round_, value in enumerate([0.5, 0.3, 0.4]):
        losses(round_, {"validation_log_loss": value})
    assert losses.best == (0.3, 1)
    auc = RoundProgress(False, "xgboost", 10)
    for round_, value in enumerate([0.8, 0.9, 0.85]):
        auc(round_, {"train_roc_auc": 1.0, "validation_roc_auc": value})
    assert auc.best == (0.9, 1)


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_a_progress_line_nobody_sees_does_not_make_the_booster_evaluate_validation_every_round(family, monkeypatch):
    from trainpipe.models.base import FitContext

    X, y, Xv, yv = make_data("binary")
    for tty, expected in ((False, {}), (True, {"validation_log_loss"})):
        monkeypatch.setattr("sys.stderr.isatty", lambda tty=tty: tty)
        model = build_family(ModelConfig(type=family, params={"n_estimators": 5}), "binary", 2, 0, 1)
        result = model.fit(X, y, Xv, yv, context=FitContext(verbose=True))
        assert set(result.history) == set(expected) and result.iterations == 5


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_a_spent_budget_stops_a_booster_between_two_rounds(family):
    from trainpipe.errors import BudgetExceeded
    from trainpipe.models.base import FitContext
    from trainpipe.monitoring.cost import BudgetStop, Usage

    rounds = []

    def budget():
        rounds.append(1)
        return BudgetStop("budget.max_cost", "budget.max_cost $1 reached: $1.0000 spent", Usage(1.0), 1.0) \
            if len(rounds) == 4 else None

    X, y, Xv, yv = make_data("binary")
    model = build_family(ModelConfig(type=family, params={"n_estimators": 50}), "binary", 2, 0, 1)
    with pytest.raises(BudgetExceeded) as stopped:
        model.fit(X, y, Xv, yv, context=FitContext(budget=budget))
    assert stopped.value.key == "budget.max_cost"
    assert stopped.value.message.endswith("training stopped after boosting round 4 (boosters keep no checkpoint: a "
                                          "resume trains again)")


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_a_boosters_rounds_reach_the_fit_contexts_watcher_with_throughput_per_window(family, monkeypatch):
    metric = "validation_log_loss"  # both libraries' default binary metric, under trainpipe's name
    importlib.import_module(family)
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    from trainpipe.models import gbdt_rounds
    from trainpipe.models.base import FitContext

    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    made = []

    class Recording:
        def __init__(self, spec):
            self.spec, self.seen = spec, []

        def observe(self, round_, values, rows_per_s=None):
            self.seen.append((round_, dict(values), rows_per_s))

    def factory(spec):
        made.append(Recording(spec))
        return made[-1]

    monkeypatch.setattr(gbdt_rounds, "THROUGHPUT_WINDOW_S", 0.0)  # every round closes a window: a rate each round
    model = build_family(ModelConfig(type=family, params={"n_estimators": 5}), "binary", 2, 0, 1)
    model.fit(X[:400], y[:400], X[400:], y[400:], train_metrics=True, context=FitContext(watch=factory))
    (watch,) = made
    assert (watch.spec.monitor, watch.spec.mode, watch.spec.loss, watch.spec.unit) == (
        metric, "min", "train_log_loss", "round")
    assert [r for r, _, _ in watch.seen] == [0, 1, 2, 3, 4]
    assert all({"train_log_loss", metric} <= set(v) and speed > 0 for _, v, speed in watch.seen)

    monkeypatch.setattr(gbdt_rounds, "THROUGHPUT_WINDOW_S", 3600.0)  # no window closes in a short fit: no rate at all
    made.clear()
    model.fit(X[:400], y[:400], X[400:], y[400:], context=FitContext(watch=factory))
    assert made[0].spec.loss == metric and all(speed is None for _, _, speed in made[0].seen)


@pytest.mark.parametrize("family", ["xgboost", "lightgbm"])
def test_validation_is_evaluated_per_round_only_when_something_reads_it(family):
    X, y, Xv, yv = make_data("binary")
    params = {"n_estimators": 6, **({"min_child_samples": 5} if family == "lightgbm" else {})}
    unwatched = build_family(ModelConfig(type=family, params=params), "binary", 2, 0, 1).fit(X, y, Xv, yv)
    assert unwatched.history == {} and unwatched.iterations == 6 and not unwatched.stopped_early
    stopping = build_family(ModelConfig(type=family, params=params), "binary", 2, 0, 1).fit(
        X, y, Xv, yv, early_stopping_rounds=3)
    assert len(stopping.history["validation_log_loss"]) == stopping.iterations
    curves = build_family(ModelConfig(type=family, params=params), "binary", 2, 0, 1).fit(X, y, Xv, yv,
                                                                                         train_metrics=True)
    assert sorted(curves.history) == ["train_log_loss", "validation_log_loss"]


def test_lightgbm_declares_the_native_code_columns_categorical_in_its_saved_model(tmp_path):
    import lightgbm as lgb
    import numpy as np

    from trainpipe.models.base import FitContext

    rng = np.random.default_rng(0)
    X = np.c_[rng.normal(size=400), rng.integers(0, 6, 400)].astype(np.float32)
    y = ((X[:, 1] % 2 == 0) ^ (X[:, 0] > 0)).astype(np.int64)
    model = build_family(ModelConfig(type="lightgbm", params={"n_estimators": 5, "min_child_samples": 5}),
                         "binary", 2, 0, 1)
    model.fit(X, y, X[:50], y[:50], context=FitContext(categorical={"columns": [1], "native": True}))
    model.save(tmp_path)
    assert lgb.Booster(model_file=str(tmp_path / "model.txt")).params.get("categorical_feature") == [1]
