"""predict's Parquet output: scores byte-stream-split (smaller and faster to write), labels as dictionary pages,
values unchanged."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainpipe.registry.predict import writer_options


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_scores_are_byte_stream_split_labels_dictionary_encoded_and_read_back_unchanged(task, tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.random(5000).astype(np.float32).astype(np.float64)  # float32 scores, as the families give them
    columns = {"id": pa.array([f"C{i}" for i in range(5000)])}
    if task == "binary":
        columns.update(prediction=pa.DictionaryArray.from_arrays(pa.array((scores >= 0.5).astype(np.int32)),
                                                                 pa.array(["No", "Yes"])),
                       proba_No=pa.array(1 - scores), proba_Yes=pa.array(scores))
    else:
        columns["prediction"] = pa.array(scores)
    table = pa.table(columns)
    options = writer_options(table.schema)
    with pq.ParquetWriter(tmp_path / "p.parquet", table.schema, **options) as writer:
        writer.write_table(table)
    assert pq.read_table(tmp_path / "p.parquet").equals(table)
    meta = pq.ParquetFile(tmp_path / "p.parquet").metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: set(meta.column(i).encodings) for i in range(meta.num_columns)}
    floats = [name for name in table.column_names if pa.types.is_floating(table.schema.field(name).type)]
    assert floats and all("BYTE_STREAM_SPLIT" in encodings[name] for name in floats)
    assert ("RLE_DICTIONARY" in encodings["prediction"]) == (task == "binary")
    assert "RLE_DICTIONARY" not in encodings["id"]
