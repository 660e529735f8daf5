"""Tuning's preflight: the search space against the family's own check, the sampler and the storage URL,
all before any data is read."""

import pytest

from trainpipe.config import config_from_dict
from trainpipe.errors import ConfigError, ModelError
from trainpipe.models import get_family
from trainpipe.tuning.checks import check_space
from trainpipe.tuning.space import family_space

BASE = {"name": "t", "task": "binary", "data": {"path": "d.csv", "target": "y"}}


def config(tuning: dict, model: dict | None = None, task: str = "binary"):
    return config_from_dict({**BASE, "task": task, "model": model or {"type": "xgboost"},
                             "tuning": {"enabled": True, **tuning}}, source="p.yaml")


@pytest.mark.parametrize("family, params, expected", [
    ("xgboost", {"max_dept": {"type": "int", "low": 2, "high": 6}}, "tuning.space.max_dept: xgboost has no parameter 'max_dept' (did you mean 'max_depth'?)"),
    ("lightgbm", {"leaf_count": {"type": "int", "low": 2, "high": 6}}, "tuning.space.leaf_count: lightgbm has no parameter"),
    ("sklearn", {"C": {"type": "float", "low": 0.1, "high": 1}}, "tuning.space.C: HistGradientBoostingClassifier has no parameter 'C'"),
    ("torch_mlp", {"dropout": {"type": "float", "low": 0.1, "high": 1.0}}, "tuning.space.dropout:"),
])
def test_names_and_ranges_are_checked_against_the_family(family, params, expected):
    with pytest.raises(ModelError) as err:
        check_space(config({"space": params}, {"type": family}))
    assert err.value.message.startswith(expected) and err.value.key.startswith("tuning.space.")


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("family", ["xgboost", "lightgbm", "sklearn", "torch_mlp"])
def test_every_default_space_passes_its_family_check(family, task):
    cfg = config({}, {"type": family}, task)
    searched = family_space(cfg)
    # the whole default space is searched (nothing dropped on the way) and both ends of it pass the check
    assert set(searched) == set(get_family(family).default_search_space(task)) and searched
    assert check_space(cfg) is None


def test_sampler_and_storage_problems_are_found_before_any_data_is_read():
    from trainpipe.errors import MissingDependency

    with pytest.raises(MissingDependency, match=r"tuning.storage: the PostgreSQL driver psycopg2 is not installed; "
                       r"use postgresql\+psycopg:// \(psycopg 3\) and pip install 'trainpipe\[postgres\]'"):
        check_space(config({"storage": "postgresql+psycopg2://tuner@db.internal/optuna"}))
    with pytest.raises(ConfigError, match="tuning.storage: not a usable SQLAlchemy URL"):
        check_space(config({"storage": "not a url"}))
    with pytest.raises(ConfigError, match="tuning.space.eta.step: the grid sampler needs a step"):
        check_space(config({"sampler": {"type": "grid"}, "space": {"eta": {"type": "float", "low": 0.1, "high": 0.3}}},
                           {"type": "xgboost"}))


@pytest.mark.parametrize("family", ["xgboost", "lightgbm", "sklearn"])
def test_ddp_trials_are_refused_for_a_family_that_trains_in_one_process(family):
    with pytest.raises(ConfigError) as err:
        check_space(config({"trial_world_size": 2}, {"type": family}))
    assert err.value.key == "tuning.trial_world_size"
    assert err.value.message.startswith(f"tuning.trial_world_size: {family} trains in one process")


def test_ddp_trials_pass_for_torch_mlp_and_one_process_trials_for_every_family():
    assert check_space(config({"trial_world_size": 2}, {"type": "torch_mlp"})) is None
    assert check_space(config({"trial_world_size": 1}, {"type": "xgboost"})) is None


def test_ddp_trials_with_cross_validation_are_one_config_error_naming_the_key():
    with pytest.raises(ConfigError) as err:
        config({"trial_world_size": 2, "cv": {"folds": 3}}, {"type": "torch_mlp"})
    assert "tuning.trial_world_size: cross-validated trials (tuning.cv.folds) run in one process" in err.value.message
