"""Preprocessing: fitted on train only, auto choices follow the model, unknown categories survive."""

import numpy as np
import pandas as pd
import pytest

from trainpipe.data import categories
from trainpipe.data.features import (FeaturesConfig, LabelCoding, build_preprocessor, fit_on_rows, fitted_parts,
                                     passthrough_columns, select_columns, transform, transform_rows)
from trainpipe.errors import ConfigError


def frame():
    return pd.DataFrame({"num": [1.0, 2.0, np.nan, 4.0, 100.0], "cat": ["a", "b", None, "a", "b"],
                         "flag": [True, False, True, False, True], "id": list("vwxyz"), "y": [0, 1, 0, 1, 0]})


def test_roles_exclude_target_and_id():
    roles = select_columns(frame(), FeaturesConfig(), exclude=["y", "id"])
    assert roles["numeric"] == ["num"] and roles["categorical"] == ["cat", "flag"]


def test_linear_models_get_imputation_scaling_and_onehot_fitted_on_train_only():
    data = frame()
    roles = select_columns(data, FeaturesConfig(), exclude=["y", "id"])
    pre, resolved = build_preprocessor(roles, FeaturesConfig(), tree_model=False, handles_missing=False)
    assert resolved == {"impute": "median", "scale": "standard", "encoding": "onehot"}
    train = data.iloc[:4]
    pre.fit(train)
    scaler = pre.named_transformers_["numeric"][-1]
    assert np.isclose(scaler.mean_[0], np.mean([1.0, 2.0, 2.0, 4.0]))  # median-imputed train rows only
    out = transform(pre, pd.DataFrame({**{c: [v] for c, v in data.iloc[0].items()}, "cat": ["never-seen"]}))
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_tree_models_keep_nan_and_use_ordinal_codes():
    data = frame()
    roles = select_columns(data, FeaturesConfig(), exclude=["y", "id"])
    pre, resolved = build_preprocessor(roles, FeaturesConfig(), tree_model=True, handles_missing=True)
    assert resolved == {"impute": "none", "scale": "none", "encoding": "ordinal"}
    out = transform(pre.fit(data), data)
    assert out.shape == (5, 3) and np.isnan(out[2, 0]) and np.isnan(out[2, 1])


def test_native_categoricals_are_the_tree_codes_and_only_for_families_that_split_on_categories():
    data = frame()
    roles = select_columns(data, FeaturesConfig(), exclude=["y", "id"])
    pre, resolved = build_preprocessor(roles, FeaturesConfig(), tree_model=True, handles_missing=True,
                                       native_categoricals="default")
    assert resolved["encoding"] == "native"
    _, on_request = build_preprocessor(roles, FeaturesConfig(), tree_model=True, handles_missing=True,
                                       native_categoricals="available")
    assert on_request["encoding"] == "ordinal"
    ordinal, _ = build_preprocessor(roles, FeaturesConfig(), tree_model=True, handles_missing=True)
    np.testing.assert_array_equal(transform(pre.fit(data), data), transform(ordinal.fit(data), data))
    native = FeaturesConfig(categorical={"encoding": "native"})
    with pytest.raises(ConfigError, match="features.categorical.encoding: native needs"):
        build_preprocessor(roles, native, tree_model=True, handles_missing=True)


def test_all_numeric_tree_features_skip_the_transformer_and_give_the_same_matrix():
    data = pd.DataFrame({"a": [1.5, np.nan, 3.0], "b": np.array([4, 5, 6], dtype=np.int64), "y": [0, 1, 0]})
    roles = select_columns(data, FeaturesConfig(), exclude=["y"])
    pre, _ = build_preprocessor(roles, FeaturesConfig(), tree_model=True, handles_missing=True)
    pre.fit(data)
    assert passthrough_columns(pre) == ["a", "b"]
    fast = transform(pre, data)
    np.testing.assert_array_equal(fast, np.ascontiguousarray(pre.transform(data), dtype=np.float32))
    assert fast.dtype == np.float32 and fast.flags["C_CONTIGUOUS"]
    scaled, _ = build_preprocessor(roles, FeaturesConfig(), tree_model=False, handles_missing=False)
    assert passthrough_columns(scaled.fit(data)) is None


@pytest.mark.parametrize("tree_model", [True, False])
def test_each_splits_rows_are_bitwise_the_rows_of_the_whole_matrix_in_c_order(tree_model):
    """The features stage gathers each split's rows (from the columns' block for a pass-through matrix)."""
    rng = np.random.default_rng(1)
    rows = 500
    data = pd.DataFrame({"f32": np.where(rng.random(rows) < 0.1, np.nan, rng.normal(size=rows)).astype(np.float32),
                         "f64": rng.normal(size=rows) * 1e9, "i64": rng.integers(2**53, 2**60, rows), "y": 0})
    roles = select_columns(data, FeaturesConfig(), exclude=["y"])
    pre, _ = build_preprocessor(roles, FeaturesConfig(), tree_model=tree_model, handles_missing=tree_model)
    pre.fit(data)
    assert (passthrough_columns(pre) is not None) == tree_model
    order = rng.permutation(rows)
    parts = {"train": np.sort(order[:350]), "validation": np.sort(order[350:420]), "test": np.sort(order[420:])}
    whole = transform(pre, data)
    for name, matrix in transform_rows(pre, data, parts).items():
        assert matrix.dtype == np.float32 and matrix.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(matrix.view(np.uint32), whole[parts[name]].view(np.uint32))


def test_embedding_models_get_scaled_numbers_and_codes_with_minus_one_for_unknown_or_missing():
    data = frame()
    roles = select_columns(data, FeaturesConfig(), exclude=["y", "id"])
    pre, resolved = build_preprocessor(roles, FeaturesConfig(), tree_model=False, handles_missing=False,
                                       categorical_codes=True)
    assert resolved == {"impute": "median", "scale": "standard", "encoding": "ordinal"}
    pre.fit(data.iloc[:4])
    unseen = pd.DataFrame({"num": [1.0], "cat": ["never seen"], "flag": [True], "id": ["q"], "y": [0]})
    out = transform(pre, pd.concat([data, unseen], ignore_index=True))
    assert not np.isnan(out).any()
    assert out[2, 1] == -1 and out[5, 1] == -1  # missing and unknown share the dedicated code
    assert set(out[[0, 1, 3], 1]) == {0.0, 1.0}


def test_label_coding_puts_the_positive_class_last_and_round_trips():
    labels = pd.Series(["Yes", "No", "No", "Yes"])
    coding = LabelCoding.fit(labels, "binary", positive_class="No")
    assert coding.classes == ["Yes", "No"]
    assert coding.decode(coding.encode(labels)).tolist() == labels.tolist()
    assert LabelCoding.fit(labels, "binary").classes == ["No", "Yes"]


def test_a_column_without_any_value_is_dropped_and_listed_as_empty():
    data = frame().assign(nothing=np.nan, no_text=pd.Series([None] * len(frame()), dtype=object))
    roles = select_columns(data, FeaturesConfig(passthrough=["num"]), exclude=["y", "id"])
    assert roles["empty"] == ["nothing", "no_text"]
    assert "nothing" not in roles["numeric"] and "no_text" not in roles["categorical"]
    assert {"nothing", "no_text"} <= set(roles["dropped"])


def test_a_stateless_preprocessor_fitted_on_one_training_row_equals_one_fitted_on_all_of_them():
    data = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [0.5, 0.25, np.nan, 8.0], "y": [0, 1, 0, 1]})
    rows = np.array([1, 2, 3])
    roles = select_columns(data, FeaturesConfig(), exclude=["y"])
    quick, _ = build_preprocessor(roles, FeaturesConfig(), tree_model=True, handles_missing=True)
    full, _ = build_preprocessor(roles, FeaturesConfig(), tree_model=True, handles_missing=True)
    fit_on_rows(quick, data, rows)
    full.fit(data.iloc[rows])
    assert list(quick.get_feature_names_out()) == list(full.get_feature_names_out())
    assert np.array_equal(quick.transform(data), full.transform(data), equal_nan=True)
    assert np.array_equal(transform(quick, data), transform(full, data), equal_nan=True)


def test_a_preprocessor_that_learns_from_rows_is_fitted_on_every_training_row():
    data = pd.DataFrame({"a": [1.0, 2.0, 3.0, 10.0], "y": [0, 1, 0, 1]})
    roles = select_columns(data, FeaturesConfig(), exclude=["y"])
    pre, _ = build_preprocessor(roles, FeaturesConfig(), tree_model=False, handles_missing=False)
    fit_on_rows(pre, data, np.array([1, 2, 3]))
    assert np.isclose(pre.named_transformers_["numeric"][-1].mean_[0], 5.0)  # rows 1-3, not row 1 alone


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("tree_model, needs", [(False, {}), (True, {"handles_missing": True}),
                                               (False, {"categorical_codes": True}),
                                               (True, {"handles_missing": True, "native_categoricals": "default"})])
def test_the_parts_written_into_one_matrix_are_bitwise_what_the_column_transformer_gives(tree_model, needs, threaded,
                                                                                        monkeypatch):
    """Predict and features build the float32 matrix part by part (on threads for large frames); every value,
    NaN payloads included, is what ColumnTransformer.transform cast to float32 gives."""
    if threaded:  # the threaded path on small data
        monkeypatch.setattr(categories, "PARALLEL_ROWS", 1)
    rng = np.random.default_rng(0)
    rows = 300
    data = pd.DataFrame({"num": np.where(rng.random(rows) < 0.1, np.nan, rng.normal(3, 2, rows) * 1e3),
                         "big": rng.integers(2**53, 2**60, rows),  # int64 that float32 rounds: one rounding, as hstack
                         "cat": pd.Series(rng.choice(["a", "b", "c", None], rows), dtype="string"),
                         "obj": rng.choice(["x", "y", "z"], rows).astype(object), "flag": rng.random(rows) < 0.3,
                         "when": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 900, rows), unit="D"),
                         "kept": rng.normal(size=rows).astype(np.float32), "y": rng.integers(0, 2, rows)})
    config = FeaturesConfig(passthrough=["kept"])
    roles = select_columns(data, config, exclude=["y"])
    pre, _ = build_preprocessor(roles, config, tree_model=tree_model, handles_missing=needs.get("handles_missing", False),
                                categorical_codes=needs.get("categorical_codes", False),
                                native_categoricals=needs.get("native_categoricals", "no"))
    pre.fit(data.iloc[:200])
    unseen = data.iloc[200:].assign(obj="never seen")
    assert fitted_parts(pre, unseen) is not None  # the parts path, not the fallback
    fast = transform(pre, unseen)
    expected = np.ascontiguousarray(pre.transform(unseen), dtype=np.float32)
    assert fast.dtype == np.float32 and fast.flags["C_CONTIGUOUS"] and fast.shape == expected.shape
    np.testing.assert_array_equal(fast.view(np.uint32), expected.view(np.uint32))
