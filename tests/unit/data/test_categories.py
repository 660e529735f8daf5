"""CategoryCodes gives exactly OrdinalEncoder's codes (the encoder it replaced for speed)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import OrdinalEncoder

from trainpipe.data.categories import CategoryCodes
from trainpipe.data.features import to_object_strings


def column(kind: str, rng, n: int, n_cat: int) -> pd.Series:
    if kind == "str":
        return pd.Series(rng.choice([f"c{i}" for i in range(n_cat)], size=n), dtype="str")
    if kind == "object_with_missing":
        s = pd.Series(rng.choice([f"c{i}" for i in range(n_cat)], size=n)).astype(object)
        s[::7] = None
        return s
    if kind == "float_with_nan":
        s = pd.Series(rng.integers(0, n_cat, n)).astype(float)
        s[::5] = np.nan
        return s
    if kind == "nullable_bool":
        s = pd.Series(rng.integers(0, 2, n).astype(bool), dtype="boolean")
        s[::6] = pd.NA
        return s
    if kind == "category_with_missing":
        s = pd.Series(rng.choice([f"c{i}" for i in range(n_cat)], size=n)).astype("category")
        s[::4] = np.nan
        return s
    if kind == "int":
        return pd.Series(rng.integers(0, n_cat, n))
    return pd.Series(rng.integers(0, 2, n).astype(bool))


# str columns are looked up row by row; the other kinds are factorized and only their distinct values become text
@pytest.mark.parametrize("kind", ["str", "object_with_missing", "float_with_nan", "bool", "nullable_bool",
                                  "category_with_missing", "int"])
@pytest.mark.parametrize("max_categories, min_frequency", [(None, None), (2, None), (5, None), (None, 5), (3, 50)])
@pytest.mark.parametrize("unknown, missing", [(np.nan, np.nan), (np.nan, -1), (-1, -1)])
def test_codes_equal_ordinal_encoder(kind, max_categories, min_frequency, unknown, missing):
    rng = np.random.default_rng(hash((kind, max_categories, min_frequency)) % 2**32)
    for n_cat in (1, 4, 11):
        train = pd.DataFrame({"a": column(kind, rng, int(rng.integers(20, 300)), n_cat)})
        test = pd.concat([train, pd.DataFrame({"a": ["never-seen"]})], ignore_index=True)
        reference = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=unknown, encoded_missing_value=missing,
                                   max_categories=max_categories, min_frequency=min_frequency, dtype=np.float32)
        expected = reference.fit(to_object_strings(train)).transform(to_object_strings(test))
        ours = CategoryCodes(max_categories, min_frequency, unknown, missing).fit(train)
        np.testing.assert_array_equal(ours.transform(test), expected)
        np.testing.assert_array_equal(ours.transform(train), reference.transform(to_object_strings(train)))  # own dtype


def test_fitted_codes_survive_pickling_and_name_their_columns():
    train = pd.DataFrame({"plan": ["a", "b", "a"], "region": ["x", "y", None]})
    codes = pickle.loads(pickle.dumps(CategoryCodes().fit(train)))
    assert list(codes.get_feature_names_out()) == ["plan", "region"]
    np.testing.assert_array_equal(codes.transform(pd.DataFrame({"plan": ["b", "z"], "region": ["y", "x"]})),
                                  [[1, 1], [np.nan, 0]])
