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


# -- duplicate keys ----------------------------------------------------------------------------------
def test_a_key_given_twice_is_refused_with_both_line_numbers(write_config):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(BASE + "name: other\n"))
    assert "duplicate key 'name'" in err.value.message
    assert "line 6" in err.value.message and "first set at line 1" in err.value.message


def test_a_nested_key_given_twice_is_refused(write_config):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(BASE + "model:\n  type: xgboost\n  params: {max_depth: 3, max_depth: 4}\n"))
    assert "duplicate key 'max_depth'" in err.value.message and "line 8" in err.value.message


def test_a_yaml_merge_key_may_be_overridden(write_config):
    config = load_config(write_config(BASE + "model:\n  params:\n    <<: {max_depth: 3, n_estimators: 5}\n"
                                             "    max_depth: 4\n"))
    assert config.model.params == {"max_depth": 4, "n_estimators": 5}


# -- --set values --------------------------------------------------------------------------------------
@pytest.mark.parametrize("item", ["features.drop=[a,", "tracking.tags={a: 1", "name='unclosed", "name=a: b: c"])
def test_set_value_with_yaml_structure_that_does_not_parse_names_the_item(write_config, item):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(BASE), [item])
    assert f"--set {item!r}" in err.value.message and "not valid YAML" in err.value.message


@pytest.mark.parametrize("item,key,value", [("name=foo", "name", "foo"), ("data.path=*.csv", "data.path", "*.csv"),
                                            ("tracking.tags.owner=@ml-team", "tracking.tags.owner", "@ml-team"),
                                            ("features.drop=[a, b]", "features.drop", ["a", "b"])])
def test_set_plain_text_and_valid_yaml_keep_working(write_config, item, key, value):
    config = load_config(write_config(BASE), [item])
    got = config.to_dict()
    for part in key.split("."):
        got = got[part]
    assert got == value if key != "data.path" else got.endswith("*.csv")


# -- secrets -------------------------------------------------------------------------------------------
SECRET_BASE = BASE + """tracking:
  tags: {db: "${oc.env:DB_PASSWORD}", api_token: literal-token-1, owner: "${oc.env:TP_OWNER}"}
tuning:
  storage: postgresql://tp:${oc.env:DB_PASSWORD}@db.internal/optuna
"""


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", "hunter2-secret-pw")
    monkeypatch.setenv("TP_OWNER", "alice")


def test_the_live_config_keeps_real_values_and_the_record_hides_every_secret(write_config, secret_env):
    from trainpipe.config import dump_config

    config = load_config(write_config(SECRET_BASE))
    assert config.tracking.tags["db"] == "hunter2-secret-pw"
    assert config.tuning.storage == "postgresql://tp:hunter2-secret-pw@db.internal/optuna"
    recorded = config.recorded_dict()
    assert recorded["tracking"]["tags"] == {"db": "${oc.env:DB_PASSWORD}", "api_token": "<redacted>",
                                            "owner": "${oc.env:TP_OWNER}"}
    assert recorded["tuning"]["storage"] == "postgresql://tp:${oc.env:DB_PASSWORD}@db.internal/optuna"
    text = dump_config(config)
    assert "hunter2-secret-pw" not in text and "literal-token-1" not in text and "alice" not in text


def test_a_literal_url_password_is_redacted_but_the_rest_of_the_url_kept(write_config):
    config = load_config(write_config(BASE + "tuning:\n  storage: postgresql://tp:pw-in-file@db:5432/optuna\n"))
    assert config.recorded_dict()["tuning"]["storage"] == "postgresql://tp:<redacted>@db:5432/optuna"
    assert "pw-in-file" in config.credentials()


def test_a_column_named_like_a_credential_is_data_not_a_secret(write_config):
    config = load_config(write_config(BASE.replace("  target: y\n", "  target: y\n  coerce: {token_count: int}\n")))
    assert config.recorded_dict()["data"]["coerce"] == {"token_count": "int"}


def test_rotating_a_password_keeps_the_config_hash_and_cache_sections(write_config, secret_env, monkeypatch):
    path = write_config(SECRET_BASE)
    before = load_config(path)
    monkeypatch.setenv("DB_PASSWORD", "rotated-password-2")
    after = load_config(path)
    assert config_hash(before) == config_hash(after)
    assert before.hashed_section("tuning") == after.hashed_section("tuning")
    assert "hunter2-secret-pw" not in str(before.hashed_dict())


def test_a_non_credential_environment_value_is_hashed_by_value(write_config, monkeypatch):
    path = write_config(BASE + "seed: ${oc.env:TP_SEED}\n")
    monkeypatch.setenv("TP_SEED", "1")
    one = load_config(path)
    monkeypatch.setenv("TP_SEED", "2")
    two = load_config(path)
    assert one.recorded_dict()["seed"] == two.recorded_dict()["seed"] == "${oc.env:TP_SEED}"
    assert config_hash(one) != config_hash(two) and one.hashed_section("seed") == 1


def test_a_reference_to_an_environment_value_is_recorded_as_the_reference(write_config, secret_env):
    config = load_config(write_config(SECRET_BASE + "registry:\n  intended_use: ${tracking.tags.db}\n"))
    assert config.registry.intended_use == "hunter2-secret-pw"
    assert config.recorded_dict()["registry"]["intended_use"] == "${tracking.tags.db}"


def test_the_recorded_config_loads_again_from_the_environment(write_config, secret_env, tmp_path):
    import yaml

    from trainpipe.config import config_from_dict, dump_config

    config = load_config(write_config(SECRET_BASE.replace(" api_token: literal-token-1,", "")))
    text = dump_config(config)
    assert "${oc.env:DB_PASSWORD}" in text and "hunter2-secret-pw" not in text
    again = config_from_dict(yaml.safe_load(text), base=tmp_path)
    assert again.to_dict() == config.to_dict() and config_hash(again) == config_hash(config)


@pytest.mark.parametrize("example", ["breast_cancer", "churn", "ranking"])
def test_every_example_reloads_from_its_run_folder_config_with_the_same_hash(example, tmp_path):
    """What resume and `stage --run` do without a config file (the ranking one was refused: `split: not used`)."""
    from pathlib import Path

    import yaml

    from trainpipe.config import config_from_dict, dump_config

    config = load_config(Path(__file__).resolve().parents[2] / "examples" / example / "pipeline.yaml")
    again = config_from_dict(yaml.safe_load(dump_config(config)), base=tmp_path)
    assert config_hash(again) == config_hash(config) and again.to_dict() == config.to_dict()


def test_a_bad_interpolation_under_a_key_with_a_line_break_is_still_one_line(tmp_path):
    """Found by hypothesis (tests/unit/test_config_fuzz.py): the key was printed raw, so the error had two lines."""
    from trainpipe.config import load_config
    from trainpipe.errors import ConfigError

    path = tmp_path / "pipeline.yaml"
    path.write_text('name: x\ntask: binary\ndata: {path: a.csv, target: y}\nregistry:\n  "a\\nb": "${"\n')
    with pytest.raises(ConfigError) as raised:
        load_config(path, [])
    assert "\n" not in raised.value.message and "registry.a\\nb: no viable alternative" in raised.value.message
