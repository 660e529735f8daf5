"""The streamed building blocks (data/stream_*.py) against their in-memory counterparts on the same table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainpipe.data.io import DataConfig, column_statistics
from trainpipe.data.schema import ColumnSpec, SchemaConfig, validate_frame
from trainpipe.data.stream_features import MatrixWriter
from trainpipe.data.drift import sample_positions, sample_rows
from trainpipe.data.stream_read import ParquetSource, decide, rows_at
from trainpipe.data.stream_split import assign, batch_keys
from trainpipe.data.stream_stats import StreamFingerprint, StreamStatistics
from trainpipe.data.stream_validate import StreamChecks
from trainpipe.tools.datasets import synthetic_churn


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    frame = synthetic_churn(rows=5000, seed=3)
    path = tmp_path_factory.mktemp("stream") / "churn.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=700)
    return path, pd.read_parquet(path)


def source(path, **data) -> ParquetSource:
    return ParquetSource(DataConfig(path=str(path), target="churn", **data))


def parts_of(path, batch_rows: int, key: str | None, seed: int = 7) -> np.ndarray:
    out = [assign(batch_keys(offset, frame, key), seed, 0.15, 0.15)
           for offset, frame in source(path).frames(batch_rows=batch_rows)]
    return np.concatenate(out)


@pytest.mark.parametrize("key", [None, "customer_id"])
def test_split_assignment_is_the_same_whatever_the_batch_size(churn, key):
    path, frame = churn
    whole = parts_of(path, 10_000, key)
    assert len(whole) == len(frame)
    for batch_rows in (1_000, 1_234, 4_999):
        assert np.array_equal(parts_of(path, batch_rows, key), whole)
    shares = np.bincount(whole, minlength=3) / len(whole)
    assert shares == pytest.approx([0.70, 0.15, 0.15], abs=0.02)  # binomial error at 5,000 rows: ±0.005
    assert not np.array_equal(parts_of(path, 10_000, key, seed=8), whole)  # the seed matters


def test_split_by_id_follows_each_row_when_the_file_order_changes(churn, tmp_path):
    path, frame = churn
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    other = tmp_path / "shuffled.parquet"
    pq.write_table(pa.Table.from_pandas(shuffled, preserve_index=False), other, row_group_size=900)
    by_id = dict(zip(frame["customer_id"], parts_of(path, 1_000, "customer_id")))
    again = dict(zip(shuffled["customer_id"], parts_of(other, 1_000, "customer_id")))
    assert by_id == again


def test_batches_keep_one_dtype_per_column_even_when_a_batch_has_no_null(tmp_path):
    path = tmp_path / "ints.parquet"
    values = pa.array([1, 2, 3, 4, None, 6], type=pa.int64())  # the null only in the second row group
    pq.write_table(pa.table({"a": values, "churn": pa.array([0, 1] * 3)}), path, row_group_size=3)
    frames = [f for _, f in source(path).frames(batch_rows=3)]
    assert str(pd.read_parquet(path)["a"].dtype) == "float64"
    assert [str(f["a"].dtype) for f in frames] == ["float64", "float64"]


@pytest.mark.parametrize("batch_rows", [700, 1_234, 10_000])
def test_rows_at_takes_from_batches_the_rows_drifts_sample_takes_from_the_whole_table(churn, batch_rows):
    path, frame = churn
    for max_rows, seed in ((1_000, 0), (1_000, 5), (4_999, 1)):
        expected = sample_rows(frame, max_rows, seed).reset_index(drop=True)
        taken = rows_at(source(path).frames(batch_rows=batch_rows), sample_positions(len(frame), max_rows, seed))
        pd.testing.assert_frame_equal(taken, expected)
    pd.testing.assert_frame_equal(rows_at(source(path).frames(batch_rows=batch_rows), None), frame)  # no sampling


def test_rows_at_stops_reading_after_the_last_wanted_row(churn):
    path, _ = churn
    read = []
    batches = ((offset, read.append(offset) or f) for offset, f in source(path).frames(batch_rows=1_000))
    assert len(rows_at(batches, np.array([3, 1_500]))) == 2
    assert read == [0, 1_000]  # 5 batches in the file; the other 3 never read


def test_streamed_statistics_equal_the_in_memory_ones_except_sampled_quantiles(churn):
    path, frame = churn
    streamed = StreamStatistics(len(frame), sample_rows=100_000, seed=0)
    fingerprints = []
    for batch_rows in (600, 5_000):
        digest = StreamFingerprint()
        for offset, batch in source(path).frames(batch_rows=batch_rows):
            digest.update(batch)
            if batch_rows == 600:
                streamed.update(offset, batch)
        fingerprints.append(digest.hexdigest())
    assert fingerprints[0] == fingerprints[1]  # the fingerprint does not depend on the batch size
    ours, theirs = streamed.document(), column_statistics(frame, seed=0)
    assert ours["rows"] == theirs["rows"] == len(frame)
    for column, expected in theirs["columns"].items():
        got = ours["columns"][column]
        assert got["dtype"] == expected["dtype"] and got["nulls"] == expected["nulls"], column
        for key in ("min", "max", "mean", "std", "true_fraction", "top"):
            if key in expected:
                assert got[key] == pytest.approx(expected[key], rel=1e-9), (column, key)
        if "quantiles" in expected:  # the whole table is the sample at 5,000 rows
            assert got["quantiles"] == pytest.approx(expected["quantiles"]), column


def test_streamed_checks_find_what_pandera_finds_on_the_whole_table_and_duplicates_across_batches(churn):
    path, frame = churn
    schema = SchemaConfig(min_class_count=5)
    columns = {"customer_id": ColumnSpec(dtype="string", unique=True),
               "support_calls": ColumnSpec(dtype="float", nullable=False),
               "tenure_months": ColumnSpec(dtype="int", max=60, strict=True)}
    checks = StreamChecks(columns, schema, "churn", "binary", check_infinite=True)
    for i, (_, batch) in enumerate(source(path).frames(batch_rows=1_000)):
        if i == 3:  # an id of the first batch again, in another batch
            batch = batch.copy()
            batch.iloc[0, batch.columns.get_loc("customer_id")] = frame["customer_id"].iloc[0]
        checks.update(batch)
    report = checks.report({"churn", "customer_id"})
    whole = validate_frame(frame, columns, schema)["errors"]
    assert {e["check"] for e in whole} >= {"not_nullable", "range [None, 60]"}
    by_check = {(e["column"], e["check"]): e for e in report["errors"]}
    for error in whole:  # the same counts as pandera on the whole table
        assert by_check[(error["column"], error["check"])]["count"] == error["count"]
    assert by_check[("customer_id", "field_uniqueness")]["count"] == 1
    assert not report["passed"] and report["rows"] == len(frame)


def test_matrix_writer_writes_row_groups_of_the_configured_size(tmp_path):
    writer = MatrixWriter(tmp_path / "m.parquet", 3, np.int64, group_rows=100)
    rng = np.random.default_rng(0)
    X, y = rng.random((1_050, 3), dtype=np.float32), rng.integers(0, 2, 1_050)
    for start in range(0, 1_050, 77):
        writer.append(X[start:start + 77], y[start:start + 77])
    matrix = writer.close()
    meta = pq.ParquetFile(matrix.path).metadata
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [100] * 10 + [50]
    chunks = list(matrix.chunks())
    assert np.array_equal(np.concatenate([c[0] for c in chunks]), X)
    assert np.array_equal(np.concatenate([c[1] for c in chunks]), y) and np.array_equal(matrix.labels(), y)


def test_auto_streams_only_a_table_too_large_for_available_memory(churn, monkeypatch):
    path, _ = churn
    config = DataConfig(path=str(path), target="churn")
    assert not decide(config, []).stream  # a few hundred kB
    monkeypatch.setattr("trainpipe.data.stream_read.available_memory", lambda: 1_000)
    assert decide(config, []).stream
    kept = decide(config, ["data.streaming: model.type lightgbm needs the table in memory"])
    assert not kept.stream and kept.warn and "lightgbm" in kept.reason
    assert not decide(config.model_copy(update={"streaming": "off"}), []).stream


def test_auto_reading_the_metadata_of_a_corrupt_file_names_the_file(tmp_path):
    from trainpipe.errors import DataError

    path = tmp_path / "x.parquet"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"^data.path: cannot read parquet file .*x\.parquet: "):
        decide(DataConfig(path=str(path), target="churn"), [])
