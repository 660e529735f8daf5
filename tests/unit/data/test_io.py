"""Reading and fingerprinting: stable across file names and row groups, sensitive to content."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainpipe.data.io import DataConfig, column_statistics, fingerprint, read_table
from trainpipe.errors import DataError


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=1000), "b": rng.choice(["x", "y", None], 1000), "y": rng.integers(0, 2, 1000)})


def test_fingerprint_ignores_file_name_and_row_group_layout(frame, tmp_path):
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "one.parquet", row_group_size=1000)
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "other.parquet", row_group_size=37)
    a, _ = read_table(DataConfig(path=str(tmp_path / "one.parquet"), target="y"))
    b, _ = read_table(DataConfig(path=str(tmp_path / "other.parquet"), target="y"))
    assert fingerprint(a) == fingerprint(b)


def test_fingerprint_changes_when_one_value_changes(frame):
    changed = frame.copy()
    changed.loc[500, "a"] += 1e-9
    assert fingerprint(frame) != fingerprint(changed)
    relabelled = frame.copy()
    relabelled.loc[3, "b"] = "z"
    assert fingerprint(frame) != fingerprint(relabelled)


def test_glob_reads_every_file_in_sorted_order(frame, tmp_path):
    frame.iloc[:400].to_parquet(tmp_path / "part-0.parquet")
    frame.iloc[400:].to_parquet(tmp_path / "part-1.parquet")
    joined, files = read_table(DataConfig(path=str(tmp_path / "part-*.parquet"), target="y"))
    assert len(files) == 2 and len(joined) == 1000
    assert np.allclose(joined["a"].to_numpy(), frame["a"].to_numpy())


def test_fsspec_url_is_read(frame, tmp_path):
    frame.to_csv(tmp_path / "d.csv", index=False)
    loaded, _ = read_table(DataConfig(path=f"file://{tmp_path / 'd.csv'}", target="y"))
    assert len(loaded) == 1000


def test_missing_file_names_the_key_and_the_file(tmp_path):
    with pytest.raises(DataError) as err:
        read_table(DataConfig(path=str(tmp_path / "nope.csv"), target="y"))
    assert err.value.key == "data.path" and "nope.csv" in err.value.message


def test_coerce_turns_numbers_in_text_into_floats(tmp_path):
    pd.DataFrame({"charges": ["1.5", " ", "3"], "y": [0, 1, 0]}).to_csv(tmp_path / "d.csv", index=False)
    frame, _ = read_table(DataConfig(path=str(tmp_path / "d.csv"), target="y", coerce={"charges": "float"}))
    assert frame["charges"].dtype == "float64" and frame["charges"].isna().sum() == 1


def test_statistics_cover_numeric_and_categorical_columns(frame):
    stats = column_statistics(frame)
    assert stats["rows"] == 1000
    assert {"min", "max", "mean", "quantiles"} <= set(stats["columns"]["a"])
    assert stats["columns"]["b"]["nulls"] > 0 and "top" in stats["columns"]["b"]
