"""A DAG run's id and parameters, turned into a trainpipe run id and `--set` overrides (no Airflow needed)."""

from __future__ import annotations

import re
import shlex

import pytest

from trainpipe.config import load_config, parse_override
from trainpipe.errors import ConfigError
from trainpipe.orchestration.trigger import check_trigger_overrides, conf_overrides, run_id_for, set_args

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # what trainpipe accepts as a run id


@pytest.mark.parametrize("dag_run_id", [
    "manual__2026-11-30T11:49:59.773167+00:00",
    "scheduled__2026-11-30T00:00:00+00:00",
    "asset_triggered__2026-11-30T08:15:00+00:00",
    "~~weird run id with spaces/and/slashes~~",
    "x" * 300,
    "::",
])
def test_run_id_is_a_valid_trainpipe_run_id(dag_run_id):
    assert RUN_ID.match(run_id_for("churn_weekly", dag_run_id))


def test_run_id_is_the_same_for_every_retry_of_a_dag_run_and_readable():
    first = run_id_for("churn", "manual__2026-11-30T11:49:59.773167+00:00")
    assert first == run_id_for("churn", "manual__2026-11-30T11:49:59.773167+00:00")
    assert first.startswith("churn-manual__2026-11-30T11-49-59.773167-00-00-")


def test_run_ids_differ_between_dags_and_between_runs_even_after_cleaning_and_truncation():
    scheduled = "scheduled__2026-11-30T00:00:00+00:00"
    assert run_id_for("bc", scheduled) != run_id_for("churn", scheduled)  # two DAGs, one store
    assert run_id_for("bc", "a:b") != run_id_for("bc", "a+b")  # both clean to a-b
    long = "y" * 200
    assert run_id_for("bc", long + "1") != run_id_for("bc", long + "2")


@pytest.mark.parametrize("value", [2, 0.5, 1e-07, 1e20, True, None, "abc", "123", "yes", "null", "", "a b",
                                   "x: y", [1, "two", 3.5], ["a", "b"], "ünïcode", "multi\nline"])
def test_a_conf_value_reaches_trainpipe_with_its_json_type(value):
    (item,) = conf_overrides({"some.key": value})
    assert parse_override(item) == ("some.key", value)


def test_nested_conf_sets_single_keys_not_whole_sections():
    conf = {"model": {"params": {"max_depth": 2, "eta": 0.1}}, "seed": 7}
    assert conf_overrides(conf) == ["model.params.max_depth=2", "model.params.eta=0.1", "seed=7"]
    assert conf_overrides(None) == [] and conf_overrides({}) == []


def test_set_args_survive_the_shell_unchanged():
    conf = {"name": "it's; rm -rf / $(whoami)", "features.drop": ["a b", "c"]}
    words = shlex.split(set_args(conf))
    assert words[::2] == ["--set", "--set"]
    assert [parse_override(w)[1] for w in words[1::2]] == ["it's; rm -rf / $(whoami)", ["a b", "c"]]


def test_overrides_apply_to_the_config_like_command_line_sets(bc_config, write_config):
    config = load_config(write_config(bc_config), conf_overrides({"model": {"params": {"max_depth": 2}},
                                                                  "training.threads": 2}))
    assert config.model.params["max_depth"] == 2 and config.training.threads == 2


def test_trigger_parameters_may_not_read_the_environment():
    with pytest.raises(ConfigError, match=r"dag_run.conf: name: \$\{\.\.\.\} interpolation is not allowed"):
        check_trigger_overrides(conf_overrides({"name": "${oc.env:AWS_SECRET_ACCESS_KEY}"}))
    check_trigger_overrides(conf_overrides({"name": "plain $HOME is only text"}))


def test_orchestration_settings_are_validated_with_the_key_named(bc_config, write_config):
    bc_config["orchestration"] = {"retries": -1}
    with pytest.raises(ConfigError, match=r"orchestration\.retries: Input should be greater than or equal to 0"):
        load_config(write_config(bc_config))
    bc_config["orchestration"] = {"retry": 3}
    with pytest.raises(ConfigError, match=r"unknown key 'orchestration.retry' \(did you mean 'orchestration.retries'"):
        load_config(write_config(bc_config))
