"""The features of a streamed table: preprocessing fitted on a bounded sample, matrices written chunk by chunk.

The ColumnTransformer is fitted on a seeded sample of about `data.stream_fit_rows` training rows (imputation
medians, scaling, category vocabularies: on the sample, not on every training row as in memory); every batch is
then transformed and its rows appended to one Parquet file per split (`matrix_<split>.parquet`: float32 columns
x0..xN and the label `y`, row groups of `data.stream_batch_rows` rows), the form torch's `ParquetBatches` and
XGBoost's external-memory iterator read. Labels per split are also saved as `y_<split>.npy` (8 bytes a row) for
the gate and the model card's intervals.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.data.stream_split import uniform

LABEL = "y"


def feature_columns(n: int) -> list[str]:
    return [f"x{i}" for i in range(n)]


@dataclass(frozen=True)
class MatrixFile:
    """One split's transformed matrix on disk (what `features.json` "matrices" names)."""

    path: Path
    n_features: int
    rows: int

    @property
    def features(self) -> list[str]:
        return feature_columns(self.n_features)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(float32 matrix, labels) per row group, in file order."""
        import pyarrow.parquet as pq

        file = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=1 << 20)  # local file: no whole-group buffers
        for group in range(file.metadata.num_row_groups):
            table = file.read_row_group(group)
            X = np.empty((table.num_rows, self.n_features), dtype=np.float32)
            for i, name in enumerate(self.features):
                X[:, i] = table.column(name).to_numpy()
            yield X, table.column(LABEL).to_numpy()

    def labels(self) -> np.ndarray:
        import pyarrow.parquet as pq

        return pq.read_table(self.path, columns=[LABEL]).column(LABEL).to_numpy()


class MatrixWriter:
    """Rows appended in any amount, written as row groups of `group_rows` (the last one shorter)."""

    def __init__(self, path: Path, n_features: int, label_dtype: Any, group_rows: int):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path, self.n_features, self.group_rows = path, n_features, group_rows
        self.schema = pa.schema([*(pa.field(n, pa.float32()) for n in feature_columns(n_features)),
                                 pa.field(LABEL, pa.from_numpy_dtype(np.dtype(label_dtype)))])
        self.writer = pq.ParquetWriter(path, self.schema, compression="none")  # floats barely compress; CPU is scarce
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending_rows = self.rows = 0

    def append(self, X: np.ndarray, y: np.ndarray) -> None:
        if len(y):
            self.pending.append((X, y))
            self.pending_rows += len(y)
        while self.pending_rows >= self.group_rows:
            self._flush(self.group_rows)

    def _flush(self, rows: int) -> None:
        import pyarrow as pa

        X = np.concatenate([p[0] for p in self.pending])
        y = np.concatenate([p[1] for p in self.pending])
        columns = np.ascontiguousarray(X[:rows].T)
        arrays = [pa.array(columns[i]) for i in range(self.n_features)] + [pa.array(y[:rows])]
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema), row_group_size=rows)
        self.rows += rows
        self.pending = [(X[rows:], y[rows:])] if rows < len(y) else []
        self.pending_rows = len(y) - rows

    def close(self) -> MatrixFile:
        if self.pending_rows:
            self._flush(self.pending_rows)
        self.writer.close()
        return MatrixFile(self.path, self.n_features, self.rows)


def sample_mask(offset: int, rows: int, seed: int, rate: float) -> np.ndarray:
    """Rows of a batch in the preprocessing's fitting sample: a pure function of the row position and seed."""
    return uniform(np.arange(offset, offset + rows, dtype=np.uint64), seed, salt=2) < rate


def label_classes(values: list[pd.Series]) -> pd.Series:
    """Every distinct label seen (LabelCoding.fit orders them as it does for a whole column)."""
    return pd.Series(pd.unique(pd.concat(values, ignore_index=True).dropna())) if values else pd.Series(dtype=object)
