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


# -- header, encoding and multi-file schema checks -----------------------------------------------------
def test_a_csv_header_naming_a_column_twice_is_refused_naming_column_and_file(tmp_path):
    (tmp_path / "survey.csv").write_text("age,female,female,y\n30,1,0,1\n41,0,1,0\n")
    with pytest.raises(DataError) as err:
        read_table(DataConfig(path=str(tmp_path / "survey.csv"), target="y"))
    assert "'female'" in err.value.message and "survey.csv" in err.value.message and err.value.key == "data.path"


def test_a_real_column_named_like_a_pandas_copy_is_fine(tmp_path):
    (tmp_path / "ok.csv").write_text("v,v.1,y\n1,2,0\n3,4,1\n")
    frame, _ = read_table(DataConfig(path=str(tmp_path / "ok.csv"), target="y"))
    assert list(frame.columns) == ["v", "v.1", "y"]


def test_a_csv_in_another_encoding_names_the_encoding_key(tmp_path):
    (tmp_path / "latin.csv").write_bytes("city,y\nZürich,1\nGenève,0\n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        read_table(DataConfig(path=str(tmp_path / "latin.csv"), target="y"))
    assert err.value.key == "data.csv_options.encoding" and "data.csv_options.encoding" in err.value.message
    frame, _ = read_table(DataConfig(path=str(tmp_path / "latin.csv"), target="y", csv_options={"encoding": "latin-1"}))
    assert frame["city"].tolist() == ["Zürich", "Genève"]


def test_files_of_a_folder_must_share_one_schema_real_data(tmp_path):
    """scikit-learn's breast cancer table in two parts: identical schemas join; a renamed, a re-cased and a
    dropped column are each named with both files."""
    from trainpipe.tools.datasets import breast_cancer

    bc = breast_cancer()
    bc.iloc[:300].to_parquet(tmp_path / "part-0.parquet")
    bc.iloc[300:].to_parquet(tmp_path / "part-1.parquet")
    joined, _ = read_table(DataConfig(path=str(tmp_path), target="diagnosis"))
    assert joined.shape == bc.shape
    second = bc.iloc[300:].rename(columns={"mean_radius": "Mean_Radius"}).drop(columns=["worst_area"])
    second["extra"] = 1.0
    second.to_parquet(tmp_path / "part-1.parquet")
    with pytest.raises(DataError) as err:
        read_table(DataConfig(path=str(tmp_path), target="diagnosis"))
    message = err.value.message
    assert "part-0.parquet" in message and "part-1.parquet" in message
    assert "'mean_radius' vs 'Mean_Radius'" in message and "'worst_area'" in message and "'extra'" in message


def test_files_whose_column_holds_text_in_one_and_numbers_in_another_are_refused(tmp_path):
    from trainpipe.tools.datasets import synthetic_churn

    churn = synthetic_churn(rows=400, seed=3)
    churn.iloc[:200].to_csv(tmp_path / "a.csv", index=False)
    text = churn.iloc[200:].assign(monthly_charges=lambda f: f["monthly_charges"].map("${:.2f}".format))
    text.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataError) as err:
        read_table(DataConfig(path=str(tmp_path / "*.csv"), target="churn"))
    assert "'monthly_charges'" in err.value.message and "text" in err.value.message and "b.csv" in err.value.message


def test_int_and_float_parts_or_an_empty_column_are_one_schema(tmp_path):
    pd.DataFrame({"n": [1, 2], "s": ["a", "b"], "y": [0, 1]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"n": [3.5, None], "s": [None, None], "y": [1, 0]}).to_csv(tmp_path / "b.csv", index=False)
    frame, _ = read_table(DataConfig(path=str(tmp_path), target="y"))
    assert len(frame) == 4 and frame["n"].dtype == np.float64


def test_infinite_values_become_missing_when_configured(tmp_path):
    pd.DataFrame({"x": [1.0, np.inf, -1e308, 2.0], "y": [0, 1, 0, 1]}).to_parquet(tmp_path / "t.parquet")
    strict, _ = read_table(DataConfig(path=str(tmp_path / "t.parquet"), target="y"))
    assert np.isinf(strict["x"]).sum() == 1  # `error`: left for the validate stage to name
    lenient, _ = read_table(DataConfig(path=str(tmp_path / "t.parquet"), target="y", infinite="missing"))
    assert lenient["x"].isna().tolist() == [False, True, True, False]
