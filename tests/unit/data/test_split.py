"""Splits: every strategy is seeded, disjoint, complete, and keeps its promise."""

import numpy as np
import pandas as pd
import pytest

from trainpipe.data.split import SplitConfig, make_split, small_split_warnings
from trainpipe.errors import SplitError


def data(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "y": rng.choice(["a", "b", "c"], n, p=[0.7, 0.2, 0.1]),
                         "g": rng.integers(0, 50, n), "t": pd.date_range("2024-01-01", periods=n, freq="h")})


@pytest.mark.parametrize("strategy", ["random", "stratified", "group", "time"])
def test_split_is_a_disjoint_cover_and_seeded(strategy):
    frame = data()
    config = SplitConfig(strategy=strategy, group_column="g", time_column="t")
    a, _ = make_split(frame, config, "multiclass", "y", seed=3)
    b, _ = make_split(frame, config, "multiclass", "y", seed=3)
    everything = np.concatenate([a["train"], a["validation"], a["test"]])
    assert sorted(everything.tolist()) == list(range(len(frame)))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_stratified_keeps_class_shares():
    frame = data(n=5000)
    parts, _ = make_split(frame, SplitConfig(strategy="stratified"), "multiclass", "y", seed=0)
    overall = frame["y"].value_counts(normalize=True)
    for name in ("validation", "test"):
        share = frame["y"].iloc[parts[name]].value_counts(normalize=True)
        assert np.allclose(share[overall.index], overall, atol=0.01)


def test_group_split_never_puts_a_group_in_two_splits():
    frame = data()
    parts, _ = make_split(frame, SplitConfig(strategy="group", group_column="g"), "multiclass", "y", seed=0)
    groups = {k: set(frame["g"].iloc[v]) for k, v in parts.items()}
    assert not (groups["train"] & groups["validation"]) and not (groups["train"] & groups["test"])
    assert not (groups["validation"] & groups["test"])


def test_time_split_trains_on_the_past():
    frame = data().sample(frac=1.0, random_state=0).reset_index(drop=True)
    parts, _ = make_split(frame, SplitConfig(strategy="time", time_column="t"), "multiclass", "y", seed=0)
    assert frame["t"].iloc[parts["train"]].max() < frame["t"].iloc[parts["validation"]].min()
    assert frame["t"].iloc[parts["validation"]].max() < frame["t"].iloc[parts["test"]].min()


def test_a_class_missing_from_validation_is_an_error_naming_the_class():
    frame = pd.DataFrame({"x": range(100), "y": ["a"] * 98 + ["b"] * 2})
    with pytest.raises(SplitError) as err:
        make_split(frame, SplitConfig(strategy="random"), "binary", "y", seed=0)
    assert "'b'" in err.value.message and err.value.key in ("split.validation", "split.test")


def test_a_tiny_table_warns_that_its_test_metrics_mean_little():
    small = pd.DataFrame({"x": np.arange(25.0), "y": ["yes", "no"] * 12 + ["yes"]})  # 25 rows, as in issue 10
    parts, _ = make_split(small, SplitConfig(), "binary", "y", seed=0)
    warnings = small_split_warnings(parts, small["y"])
    assert any(w.startswith("split.test:") and f"only {len(parts['test'])} row" in w for w in warnings)
    assert any(w.startswith("split.validation:") for w in warnings)
    assert any("class(es)" in w and "test split" in w for w in warnings)


def test_a_rare_class_is_named_even_when_the_split_is_large_enough():
    big = data(n=2000)
    parts, _ = make_split(big, SplitConfig(), "multiclass", "y", seed=0)
    assert small_split_warnings(parts, big["y"]) == []
    rare = big.assign(y=np.where(np.arange(2000) < 40, "rare", big["y"]))
    parts, _ = make_split(rare, SplitConfig(), "multiclass", "y", seed=0)
    warnings = small_split_warnings(parts, rare["y"])
    assert len(warnings) == 2 and all("'rare' (6)" in w for w in warnings)
    assert small_split_warnings(parts, None) == []  # regression: sizes only


def test_class_coverage_names_exactly_the_classes_a_split_lacks():
    from trainpipe.data.split import check_class_coverage

    labels = pd.Series(["a", "b", "c", "a", "b", "a", "b", "c"], name="y")
    check_class_coverage(labels, {"train": np.array([0, 1, 2]), "validation": np.array([3, 4, 7]),
                                  "test": np.array([5, 6, 2])})  # every training class present: no error
    with pytest.raises(SplitError) as err:
        check_class_coverage(labels, {"train": np.array([0, 1, 2]), "validation": np.array([3, 4]),
                                      "test": np.array([5, 6, 7])})
    assert err.value.key == "split.validation" and "'c'" in err.value.message and "'a'" not in err.value.message
