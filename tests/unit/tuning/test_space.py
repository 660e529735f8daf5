"""Search spaces: YAML validation (one line naming the key), family checks, sampling, conditions, grids."""

import optuna
import pytest

from trainpipe.config import config_from_dict
from trainpipe.errors import ConfigError
from trainpipe.tuning.space import (
    decode,
    family_space,
    fixed_params,
    grid,
    parse_space,
    sampling_order,
    suggest,
)

BASE = {"name": "t", "task": "binary", "data": {"path": "d.csv", "target": "y"}}


def config(tuning: dict, model: dict | None = None, task: str = "binary"):
    return config_from_dict({**BASE, "task": task, "model": model or {"type": "xgboost"},
                             "tuning": {"enabled": True, **tuning}}, source="p.yaml")


@pytest.mark.parametrize("spec, expected", [
    ({"type": "float", "low": 0.3, "high": 0.01}, "tuning.space.p: low must be below high (got low=0.3, high=0.01)"),
    ({"type": "int", "low": 5, "high": 5}, "tuning.space.p: low must be below high"),
    ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "tuning.space.p: log: a log range needs low > 0 (got low=0)"),
    ({"type": "categorical", "choices": []}, "tuning.space.p: choices: a categorical parameter needs a non-empty list"),
    ({"type": "float", "low": 1}, "tuning.space.p: low/high: a float parameter needs both"),
    ({"type": "int", "low": 1.5, "high": 4}, "tuning.space.p: low/high: an int parameter needs whole numbers"),
    ({"type": "uniform", "low": 1, "high": 2}, "tuning.space.p.type"),
    ({"type": "float", "low": 1, "high": 2, "lo": 1}, "unknown key 'tuning.space.p.lo'"),
])
def test_bad_ranges_are_one_line_naming_the_key(spec, expected):
    with pytest.raises(ConfigError) as err:
        config({"space": {"p": spec}})
    assert expected in err.value.message and "\n" not in err.value.message


@pytest.mark.parametrize("when, expected", [
    ({"missing": 1}, "tuning.space.rate.when: 'missing' is not a parameter of the search space"),
    ({"depth": 3}, "tuning.space.rate.when: 'depth' must be categorical"),
    ({"booster": "linear"}, "tuning.space.rate.when: 'linear' is not one of booster's choices"),
])
def test_bad_conditions_name_the_key(when, expected):
    space = {"booster": {"type": "categorical", "choices": ["gbtree", "dart"]},
             "depth": {"type": "int", "low": 2, "high": 4}, "rate": {"type": "float", "low": 0, "high": 1, "when": when}}
    with pytest.raises(ConfigError) as err:
        config({"space": space})
    assert expected in err.value.message


def test_budget_and_objective_cross_checks():
    with pytest.raises(ConfigError, match="tuning.max_cost: needs tuning.cost.usd_per_hour"):
        config({"max_cost": 1.0})
    with pytest.raises(ConfigError, match="tuning.cost: compute: name one of the compute types"):
        config({"cost": {"usd_per_hour": {"cpu": 0.1}, "compute": "gpu"}})
    with pytest.raises(ConfigError, match="tuning.metric: 'rmse' is not a binary metric"):
        config({"metric": "rmse"})
    with pytest.raises(ConfigError, match="tuning.sampler.type: nsga2 is for two objectives"):
        config({"sampler": {"type": "nsga2"}})
    assert config({"cost": {"usd_per_hour": {"cpu": 0.1, "gpu": 2.0}, "compute": "gpu"}}).tuning.cost.rate == 2.0


def test_default_space_leaves_out_fixed_params_and_follows_the_sklearn_estimator():
    space = family_space(config({}, {"type": "xgboost", "params": {"max_depth": 4}}))
    assert "max_depth" not in space and "learning_rate" in space
    with pytest.raises(ConfigError, match="tuning.space: no default search space for sklearn.linear_model.LogisticRegression"):
        family_space(config({}, {"type": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"}))


def test_fixed_params_are_the_default_space_entries_that_model_params_sets():
    xgb = {"type": "xgboost", "params": {"n_estimators": 500, "learning_rate": 0.05, "max_depth": 6}}
    assert fixed_params(config({}, xgb)) == {"learning_rate": 0.05, "max_depth": 6}  # n_estimators is not searched
    assert fixed_params(config({}, {"type": "torch_mlp", "params": {"epochs": 3, "lr": 0.01}})) == {"lr": 0.01}
    assert fixed_params(config({}, {"type": "lightgbm"})) == {}
    # an explicit space searches what it lists, whatever model.params says
    explicit = {"space": {"max_depth": {"type": "int", "low": 2, "high": 4}}}
    assert fixed_params(config(explicit, xgb)) == {}


def test_conditional_params_are_sampled_only_when_their_condition_holds():
    space = parse_space({"rate": {"type": "float", "low": 0.0, "high": 0.3, "when": {"booster": "dart"}},
                         "booster": {"type": "categorical", "choices": ["gbtree", "dart"]},
                         "hidden": {"type": "categorical", "choices": [[16], [32, 16]]}})
    assert sampling_order(space).index("booster") < sampling_order(space).index("rate")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(20):
        trial = study.ask()
        params = suggest(trial, space)
        seen.append(params)
        assert ("rate" in params) == (params["booster"] == "dart")
        assert params["hidden"] in ([16], [32, 16])
        study.tell(trial, 0.0)
    assert {p["booster"] for p in seen} == {"gbtree", "dart"}
    assert decode(space, study.trials[0].params)["hidden"] in ([16], [32, 16])


def test_grid_lists_every_value_and_refuses_unstepped_floats():
    space = parse_space({"d": {"type": "int", "low": 2, "high": 4}, "lr": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1},
                         "c": {"type": "categorical", "choices": ["a", "b"]}})
    values = grid(space)
    assert values["d"] == [2, 3, 4] and values["lr"] == pytest.approx([0.1, 0.2, 0.3]) and values["c"] == ["a", "b"]
    with pytest.raises(ConfigError, match="tuning.space.x.step: the grid sampler needs a step"):
        grid(parse_space({"x": {"type": "float", "low": 0, "high": 1}}))
