"""The contract every registered model family must meet; a new family is tested by registering it.

The checks are plain functions (`check_*`), so that a family registered at run time (a plugin:
tests/unit/models/test_family_plugin.py) runs the same suite as trainpipe's own."""

import numpy as np
import pytest

from trainpipe.evaluation.metrics import METRICS
from trainpipe.models import FAMILIES, ModelConfig, build_family, get_family, load_family
from trainpipe.models.base import FitContext, ModelFamily, ScaffoldDefaults

TASKS = {"binary": 2, "multiclass": 3, "regression": 0}
FAST = {"xgboost": {"n_estimators": 15}, "lightgbm": {"n_estimators": 15, "min_child_samples": 5}, "sklearn": {"max_iter": 15},
        "torch_mlp": {"epochs": 15, "hidden_dims": [16], "batch_size": 32, "lr": 0.01}}
# What a per-iteration validation value may be called: evaluate's metric names, a torch family's training loss,
# and the boosters' mse / error_rate (the libraries' l2 and error).
TRAINPIPE_NAMES = {name for names in METRICS.values() for name in names} | {"loss", "mse", "error_rate"}
# Many iterations, so that stopping early is observable.
LONG = {"xgboost": {"n_estimators": 50}, "lightgbm": {"n_estimators": 50}, "torch_mlp": {"epochs": 50, "hidden_dims": [8]}}


def make_data(task, n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    score = X[:, 0] + 0.5 * X[:, 1]
    if task == "regression":
        y = score + rng.normal(0, 0.1, n)
    elif task == "binary":
        y = (score > 0).astype(np.int64)
    else:
        y = np.digitize(score, [-0.5, 0.5]).astype(np.int64)
    return X[:200], y[:200], X[200:], y[200:]


# -- the suite ------------------------------------------------------------------------------------
def check_fits_predicts_reports_and_round_trips(family: str, params: dict, task: str, folder) -> None:
    X, y, Xv, yv = make_data(task)
    model = build_family(ModelConfig(type=family, params=params), task, TASKS[task], seed=0, threads=1)
    assert isinstance(model, ModelFamily)
    reports = []
    result = model.fit(X, y, Xv, yv, early_stopping_rounds=5,
                       report=lambda step, values: reports.append((step, values)) or False)
    assert result.iterations >= 1
    if get_family(family).iteration_param is not None or task != "regression":  # sklearn regression: one fit, no value
        assert reports and all(isinstance(v, float) for _, vals in reports for v in vals.values())
    # one naming for per-iteration and final metrics: validation_log_loss, never validation_logloss
    named = {k for k in result.history} | {k for _, vals in reports for k in vals}
    assert {k.removeprefix("validation_") for k in named if k.startswith("validation_")} <= TRAINPIPE_NAMES, named
    pred = model.predict(Xv)
    assert pred.shape == (len(Xv),)
    if task != "regression":
        proba = model.predict_proba(Xv)
        assert proba.shape == (len(Xv), TASKS[task]) and np.allclose(proba.sum(axis=1), 1.0)
        assert (pred == yv).mean() > 0.6
    model.save(folder / "m")
    loaded = load_family(folder / "m")
    assert np.array_equal(loaded.predict(Xv), pred)


def check_fit_takes_the_train_stages_context(family: str, params: dict, folder) -> None:
    """`context` is part of the protocol: the train stage passes it to every family without asking."""
    X, y, Xv, yv = make_data("binary")
    model = build_family(ModelConfig(type=family, params=params), "binary", 2, seed=0, threads=1)
    context = FitContext(checkpoint_dir=folder / "ckpt", config_hash="h", verbose=True)
    result = model.fit(X, y, Xv, yv, early_stopping_rounds=5, context=context)
    assert result.iterations >= 1 and (model.predict(Xv) == yv).mean() > 0.6


def check_report_returning_true_stops_training(family: str, params: dict) -> None:
    X, y, Xv, yv = make_data("binary")
    model = build_family(ModelConfig(type=family, params=params), "binary", 2, seed=0, threads=1)
    result = model.fit(X, y, Xv, yv, report=lambda step, values: step >= 4)
    assert result.iterations <= 6


def check_default_search_space_names_real_parameters(family: str) -> None:
    space = get_family(family).default_search_space("binary")
    assert space and all(spec["type"] in ("int", "float", "categorical") for spec in space.values())
    get_family(family).check_config({k: (s.get("low") or 1) for k, s in space.items()}, None, "binary")


def check_same_seed_gives_identical_predictions(family: str, params: dict) -> None:
    X, y, Xv, yv = make_data("binary")
    preds = []
    for _ in range(2):
        model = build_family(ModelConfig(type=family, params=params), "binary", 2, seed=7, threads=2)
        model.fit(X, y, Xv, yv)
        preds.append(model.predict_proba(Xv))
    assert np.array_equal(preds[0], preds[1])


def check_declares_what_the_rest_of_trainpipe_reads(family: str) -> None:
    """iteration_param (tuning's retrain), requirements (packaging), scaffold (init), user code (the train key)."""
    cls = get_family(family)
    assert cls.name == family
    if cls.iteration_param is not None:  # a real parameter of the family, taking an iteration count
        cls.check_config({cls.iteration_param: 3}, None, "binary")
    assert all(isinstance(r, str) or (isinstance(r, tuple) and all(isinstance(a, str) for a in r))
               for r in cls.requirements)
    assert cls.scaffold is None or isinstance(cls.scaffold, ScaffoldDefaults)
    assert cls.user_code_hashes(None) == {}


# -- trainpipe's own families -----------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_fits_predicts_reports_and_round_trips(family, task, tmp_path):
    check_fits_predicts_reports_and_round_trips(family, FAST[family], task, tmp_path)


# only families that iterate: a single-fit estimator (sklearn) has no iterations to stop
@pytest.mark.parametrize("family", sorted(f for f in FAMILIES if get_family(f).iteration_param is not None))
def test_report_returning_true_stops_training(family):
    check_report_returning_true_stops_training(family, LONG[family])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fit_takes_the_train_stages_context(family, tmp_path):
    check_fit_takes_the_train_stages_context(family, FAST[family], tmp_path)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_default_search_space_names_real_parameters(family):
    check_default_search_space_names_real_parameters(family)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_seed_gives_identical_predictions(family):
    check_same_seed_gives_identical_predictions(family, FAST[family])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_declares_what_the_rest_of_trainpipe_reads(family):
    check_declares_what_the_rest_of_trainpipe_reads(family)
