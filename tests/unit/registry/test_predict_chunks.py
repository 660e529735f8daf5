"""predict_file's chunks: text inputs are read from Parquet as dictionaries and give the same matrix as plain text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainpipe.data.features import FeaturesConfig, build_preprocessor, select_columns, transform
from trainpipe.registry.predict import chunks, text_columns


def training_frame() -> pd.DataFrame:
    return pd.DataFrame({"num": [1.0, 2.0, np.nan, 4.0, 100.0, 3.0], "cat": ["a", "b", None, "a", "b", "c"],
                         "flag": [True, False, True, False, True, True], "id": list("uvwxyz")})


META = {"inputs": [{"name": "num", "kind": "double"}, {"name": "cat", "kind": "string"},
                   {"name": "flag", "kind": "boolean"}],
        "input_columns": ["num", "cat", "flag"], "id_column": "id"}


@pytest.mark.parametrize("needs", [{"tree_model": False, "handles_missing": False},  # onehot
                                   {"tree_model": False, "handles_missing": False, "categorical_codes": True},
                                   {"tree_model": True, "handles_missing": True},  # ordinal codes, NaN for unknown
                                   {"tree_model": True, "handles_missing": True, "native_categoricals": "default"}])
def test_text_inputs_read_as_dictionaries_give_bitwise_the_matrix_of_plain_text(needs, tmp_path):
    train = training_frame()
    roles = select_columns(train, FeaturesConfig(), exclude=["id"])
    pre, _ = build_preprocessor(roles, FeaturesConfig(), **needs)
    pre.fit(train)
    # unseen and missing categories, across two chunks whose dictionaries differ
    new = pd.DataFrame({"num": [5.0, np.nan, 1.0, 2.0, 7.0], "cat": ["b", "never seen", None, "c", "a"],
                        "flag": [False, True, True, False, True], "id": list("abcde")})
    new.to_parquet(tmp_path / "new.parquet", index=False, row_group_size=2)
    read = list(chunks(str(tmp_path / "new.parquet"), META, 2))
    assert [len(frame) for frame, _ in read] == [2, 2, 1]
    assert isinstance(read[0][0]["cat"].dtype, pd.CategoricalDtype)
    got = np.concatenate([transform(pre, frame[META["input_columns"]]) for frame, _ in read])
    plain = pd.read_parquet(tmp_path / "new.parquet")
    assert not isinstance(plain["cat"].dtype, pd.CategoricalDtype)
    expected = transform(pre, plain[META["input_columns"]])
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_only_text_inputs_stored_as_text_are_read_as_dictionaries():
    schema = pa.schema([("num", pa.float64()), ("cat", pa.string()), ("flag", pa.bool_()), ("id", pa.string()),
                        ("coded", pa.int64())])
    meta = {**META, "inputs": [*META["inputs"], {"name": "coded", "kind": "string"}]}
    assert text_columns(schema, meta) == ["cat"]  # not the id, not a text input stored as numbers


def test_a_parquet_file_without_text_inputs_reads_as_before(tmp_path):
    pq.write_table(pa.table({"num": [1.0, 2.0], "cat": [1, 2], "flag": [True, False], "id": ["a", "b"]}),
                   tmp_path / "f.parquet")
    (frame, _), = chunks(str(tmp_path / "f.parquet"), META, 10)
    assert frame["cat"].tolist() == [1, 2]  # numbers in a text input are left for check_columns and the encoders
