"""Ranking config: one line naming the key for each mistake; data.target and the tabular sections are refused."""

import pytest

from trainpipe.config import config_from_dict
from trainpipe.errors import ConfigError


def doc(**over):
    base = {"name": "r", "task": "ranking", "data": {"path": "i.parquet"},
            "ranking": {"user": "u", "item": "i"}, "model": {"type": "two_tower"}}
    base.update(over)
    return base


def test_a_minimal_ranking_config_loads_with_defaults():
    config = config_from_dict(doc())
    assert config.ranking.split.strategy == "leave_last" and config.ranking.k == [10, 20, 50]
    assert config.data.target is None


@pytest.mark.parametrize("change, message", [
    ({"data": {"path": "i.parquet", "target": "y"}}, "data.target: not used by task ranking"),
    ({"ranking": None}, "ranking: task ranking needs a `ranking` section"),
    ({"model": {"type": "xgboost"}}, "model.type: xgboost cannot do task ranking"),
    ({"split": {"strategy": "random"}}, "split: not used by task ranking"),
    ({"ranking": {"user": "u", "item": "i", "usr": "x"}}, "unknown key 'ranking.usr'"),
    ({"ranking": {"user": "u", "item": "i", "positive_threshold": 3}}, "ranking.positive_threshold needs ranking.rating"),
    ({"gates": {"min": {"test_lift_recall_at_11": 2}}},
     "gates.min.test_lift_recall_at_11: not a ranking metric (did you mean 'test_lift_recall_at_10'?)"),
    ({"evaluation": {"primary_metric": "roc_auc"}}, "evaluation.primary_metric: 'roc_auc' is not a ranking metric"),
    ({"ranking": {"user": "u", "item": "i", "baselines": []}, "gates": {"beat_baselines": True}},
     "gates.beat_baselines: needs at least one baseline in ranking.baselines"),
])
def test_mistakes_are_one_line_naming_the_key(change, message):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(doc(**change))
    assert message in exc.value.message and "\n" not in exc.value.message


def test_tabular_tasks_still_need_a_target_and_refuse_a_ranking_section():
    with pytest.raises(ConfigError, match="data.target: missing; task binary needs the label column"):
        config_from_dict({"task": "binary", "data": {"path": "d.csv"}})
    with pytest.raises(ConfigError, match="ranking: only used by task ranking"):
        config_from_dict({"task": "binary", "data": {"path": "d.csv", "target": "y"}, "ranking": {"user": "u", "item": "i"}})
    with pytest.raises(ConfigError, match="model.type: two_tower cannot do task binary"):
        config_from_dict({"task": "binary", "data": {"path": "d.csv", "target": "y"}, "model": {"type": "two_tower"}})


def test_ranking_without_a_model_type_means_two_tower():
    config = config_from_dict(doc(model={"params": {"epochs": 2}}))
    assert config.model.type == "two_tower" and config.model.params == {"epochs": 2}
    assert config_from_dict({k: v for k, v in doc().items() if k != "model"}).model.type == "two_tower"


def test_lift_gates_are_accepted():
    config = config_from_dict(doc(gates={"min": {"test_lift_recall_at_10": 1.5, "test_ndcg_at_20": 0.01}}))
    assert config.gates.min["test_lift_recall_at_10"] == 1.5


def test_a_ranking_runs_own_config_file_loads_again():
    """config.yaml of a run lists every section, defaults included: `--resume` and `trainpipe stage --run` load it."""
    import yaml

    from trainpipe.config import config_from_dict, dump_config

    config = config_from_dict(doc())
    again = config_from_dict(yaml.safe_load(dump_config(config)))
    assert again == config
