"""Fuzzing the config loader and the `--set` parser with hypothesis: whatever the YAML file or the override, the
result is a config or a `ConfigError` of one line that names the key (or, for a file that is not a mapping of
sections at all, the file). No other exception ever escapes: the CLI would show it as an internal error.

`make test` tries 200 examples per property, in-process; `make reliability` 3,000.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainpipe.config import load_config
from trainpipe.errors import ConfigError

# make test: 200 examples from a fixed seed (derandomize: a CI run never fails on a newly drawn input);
# make reliability: 3,000 fresh random ones, which is where new bugs are found.
EXAMPLES = [200, pytest.param(3000, marks=pytest.mark.reliability)]

KEYS = ["name", "task", "seed", "store", "data", "data.path", "data.target", "data.positive_class", "data.format",
        "schema", "schema.strict", "split", "split.validation", "split.test", "split.method", "model", "model.type",
        "model.params", "model.params.n_estimators", "model.params.max_depth", "model.estimator", "training",
        "training.threads", "training.early_stopping_rounds", "training.callbacks", "tuning", "tuning.enabled",
        "tuning.n_trials", "tuning.space", "tuning.sampler.type", "evaluation", "evaluation.metrics", "gates",
        "gates.champion.enabled", "gates.thresholds", "registry", "registry.name", "tracking", "tracking.uri",
        "tracking.tags", "features", "ranking", "orchestration.retries", "alerts", "cost", "nosuch", "model.prams"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["${oc.env:NOPE}", "${nosuch.key}", "${", "~", "*.csv",
                                                           "http://127.0.0.1:9", "binary", "xgboost", "-1", "1e308"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=3)),
                      max_leaves=8)


def base(tmp: Path) -> dict:
    data = tmp / "bc.csv"
    data.write_text("a,b,y\n1,2,x\n3,4,z\n")
    return {"name": "fuzz", "task": "binary", "store": str(tmp / "store"), "data": {"path": str(data), "target": "y"},
            "model": {"type": "xgboost", "params": {"n_estimators": 5}}}


def set_dotted(doc: dict, key: str, value: object) -> None:
    node = doc
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def assert_one_line_naming_a_key(exc: ConfigError, path: Path) -> None:
    assert "\n" not in exc.message, exc.message
    assert all("\n" not in line for line in exc.lines)
    if exc.key:
        shown = (exc.key, repr(exc.key)[1:-1], exc.key.split(".")[-1], repr(exc.key.split(".")[-1])[1:-1])
        assert any(name in exc.message for name in shown), (exc.key, exc.message)
    else:
        assert str(path) in exc.message or "--set" in exc.message, exc.message


def check_load(path: Path, overrides: list[str]) -> str:
    try:
        load_config(path, overrides)
    except ConfigError as exc:
        assert_one_line_naming_a_key(exc, path)
        return "rejected"
    return "accepted"


@pytest.mark.parametrize("examples", EXAMPLES)
def test_any_yaml_document_is_a_config_or_one_line_naming_the_key(examples, tmp_path, figures):
    path = tmp_path / "pipeline.yaml"
    outcomes = {"accepted": 0, "rejected": 0}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=examples < 1000,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(edits=st.lists(st.tuples(st.sampled_from(KEYS), values), min_size=1, max_size=4))
    def check(edits):
        doc = base(tmp_path)
        for key, value in edits:
            set_dotted(doc, key, value)
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        outcomes[check_load(path, [])] += 1

    check()
    figures[f"fuzz config loader ({examples})"] = {"examples": sum(outcomes.values()), **outcomes,
                                                   "tracebacks": 0}


@pytest.mark.parametrize("examples", EXAMPLES)
def test_any_raw_text_file_is_a_config_or_one_line_naming_the_file(examples, tmp_path, figures):
    path = tmp_path / "pipeline.yaml"
    outcomes = {"accepted": 0, "rejected": 0}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=examples < 1000)
    @given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                          st.sampled_from(["a: 1\na: 2\n", "[1, 2", "- x\n", "!!python/object:os.system x", "",
                                           "data: *anchor", "name: {a: [}", "\x00\x01"])))
    def check(text):
        path.write_text(text, errors="surrogatepass")
        outcomes[check_load(path, [])] += 1

    check()
    figures[f"fuzz raw config files ({examples})"] = {"examples": sum(outcomes.values()), **outcomes, "tracebacks": 0}


@pytest.mark.parametrize("examples", EXAMPLES)
def test_any_set_override_is_applied_or_one_line_naming_the_key(examples, tmp_path, figures):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(base(tmp_path)))
    outcomes = {"accepted": 0, "rejected": 0}
    keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=20))
    raw_values = st.one_of(st.text(max_size=30), st.sampled_from(["[1,", "{a: 1", "'x", "a: b", "[]", "{}", "null",
                                                                  "${oc.env:NOPE}", "1e999", "-0", "!!binary x"]))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=examples < 1000)
    @given(items=st.lists(st.one_of(st.builds(lambda k, v: f"{k}={v}", keys, raw_values), st.text(max_size=30)),
                          min_size=1, max_size=3))
    def check(items):
        outcomes[check_load(path, items)] += 1

    check()
    figures[f"fuzz --set ({examples})"] = {"examples": sum(outcomes.values()), **outcomes, "tracebacks": 0}
