"""Config loading: validation with key paths, did-you-mean, overrides, interpolation, paths, hashing."""

import pytest

from trainpipe.config import config_hash, load_config
from trainpipe.errors import ConfigError

BASE = "name: t\ntask: binary\ndata:\n  path: d.csv\n  target: y\n"


def test_minimal_config_gets_every_default(write_config):
    config = load_config(write_config(BASE))
    assert config.seed == 42 and config.model.type == "xgboost" and config.split.strategy == "auto"


def test_misspelt_top_level_key_names_it_with_a_suggestion(write_config):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(BASE + "modle:\n  type: xgboost\n"))
    assert "unknown key 'modle'" in err.value.message and "did you mean 'model'" in err.value.message


def test_misspelt_nested_key_names_the_full_path(write_config):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(BASE + "split:\n  validaton: 0.2\n"))
    assert "'split.validaton'" in err.value.message and "'split.validation'" in err.value.message
    assert err.value.key == "split.validaton"


def test_several_problems_are_reported_together_one_line_each(write_config):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(BASE + "seed: abc\nsplit:\n  test: 2\n"))
    assert len(err.value.lines) == 2
    assert any("seed" in line for line in err.value.lines) and any("split.test" in line for line in err.value.lines)


def test_set_override_is_parsed_as_yaml_and_type_checked(write_config):
    path = write_config(BASE)
    config = load_config(path, ["model.params.max_depth=8", "split.validation=0.2", "training.early_stopping_rounds=null"])
    assert config.model.params["max_depth"] == 8 and config.split.validation == 0.2
    assert config.training.early_stopping_rounds is None
    with pytest.raises(ConfigError) as err:
        load_config(path, ["split.validation=lots"])
    assert "split.validation" in err.value.message


def test_override_without_equals_is_a_config_error(write_config):
    with pytest.raises(ConfigError):
        load_config(write_config(BASE), ["model.type"])


def test_environment_interpolation(write_config, monkeypatch):
    monkeypatch.setenv("TP_TARGET", "label")
    config = load_config(write_config(BASE.replace("target: y", "target: ${oc.env:TP_TARGET}") + "seed: ${oc.env:TP_SEED,7}\n"))
    assert config.data.target == "label" and config.seed == 7


def test_relative_paths_resolve_against_the_config_folder(write_config, tmp_path):
    config = load_config(write_config(BASE))
    assert config.data.path == str((tmp_path / "d.csv").resolve())


def test_config_hash_is_stable_and_sensitive(write_config):
    path = write_config(BASE)
    assert config_hash(load_config(path)) == config_hash(load_config(path))
    assert config_hash(load_config(path)) != config_hash(load_config(path, ["seed=1"]))


def test_invalid_yaml_reports_the_line(write_config):
    with pytest.raises(ConfigError) as err:
        load_config(write_config("task: binary\ndata: [unclosed\n"))
    assert "invalid YAML" in err.value.message and "line" in err.value.message


def test_unknown_model_type_suggests_the_closest(write_config):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(BASE + "model:\n  type: xgbost\n"))
    assert "did you mean 'xgboost'" in err.value.message
