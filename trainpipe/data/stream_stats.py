"""Ingest's content fingerprint and column statistics, accumulated batch by batch (data.streaming).

The fingerprint hashes names, dtypes and values in row order like `data.io.fingerprint`, but each column's value
bytes and null mask go to two running hashes, so it does not depend on the batch size; it is not equal to the
in-memory fingerprint of the same table. Counts, nulls, min, max, mean and std are exact (Chan's pairwise update
of mean and squared deviations); quantiles and top values come from a seeded sample of about `sample_rows` rows,
as in the in-memory statistics.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.data.stream_split import uniform


class StreamFingerprint:
    def __init__(self) -> None:
        self.rows = 0
        self.columns: dict[str, tuple[Any, Any, str]] = {}  # name -> (values hash, nulls hash, dtype)

    def update(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        for name in frame.columns:
            series = frame[name]
            if str(name) not in self.columns:
                self.columns[str(name)] = (hashlib.blake2b(digest_size=16), hashlib.blake2b(digest_size=16),
                                           str(series.dtype))
            values_hash, nulls_hash, _ = self.columns[str(name)]
            values = series.to_numpy() if series.dtype.kind in "biufcmM" else None
            if values is not None and values.dtype != object:
                values_hash.update(np.ascontiguousarray(values).view(np.uint8).data)
            else:
                values_hash.update(pd.util.hash_array(series.astype(object).to_numpy(), categorize=True)
                                   .view(np.uint8).data)
                nulls_hash.update(series.isna().to_numpy().view(np.uint8).data)

    def hexdigest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(f"streamed {self.rows}".encode())
        for name, (values_hash, nulls_hash, dtype) in self.columns.items():
            h.update(name.encode())
            h.update(dtype.encode())
            h.update(values_hash.digest())
            h.update(nulls_hash.digest())
        return h.hexdigest()


class _Moments:
    """Count, mean and sum of squared deviations, merged batch by batch (Chan et al.): exact, stable."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.lo, self.hi = np.inf, -np.inf

    def add(self, values: np.ndarray) -> None:
        if not values.size:
            return
        with np.errstate(invalid="ignore", over="ignore"):
            n, mean = values.size, float(values.mean(dtype=np.float64))
            m2 = float(((values.astype(np.float64) - mean) ** 2).sum())
            delta, total = mean - self.mean, self.n + n
            self.mean += delta * n / total
            self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total
        self.lo, self.hi = min(self.lo, float(values.min())), max(self.hi, float(values.max()))


class StreamStatistics:
    """`data.io.column_statistics`'s document, from batches."""

    def __init__(self, total_rows: int, sample_rows: int = 100_000, seed: int = 0):
        self.rate = 1.0 if total_rows <= sample_rows else sample_rows / total_rows
        self.seed = seed
        self.rows = 0
        self.dtypes: dict[str, str] = {}
        self.nulls: dict[str, int] = {}
        self.moments: dict[str, _Moments] = {}
        self.trues: dict[str, int] = {}
        self.times: dict[str, tuple[Any, Any]] = {}
        self.samples: list[pd.DataFrame] = []

    def update(self, offset: int, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        keep = uniform(np.arange(offset, offset + len(frame), dtype=np.uint64), self.seed, salt=3) < self.rate
        self.samples.append(frame[keep])
        for name in frame.columns:
            column, series = str(name), frame[name]
            self.dtypes.setdefault(column, str(series.dtype))
            self.nulls[column] = self.nulls.get(column, 0) + int(series.isna().sum())
            if pd.api.types.is_bool_dtype(series):
                self.trues[column] = self.trues.get(column, 0) + int(series.sum())
            elif pd.api.types.is_numeric_dtype(series):
                values = series.to_numpy(dtype=np.float64, na_value=np.nan)
                self.moments.setdefault(column, _Moments()).add(values[~np.isnan(values)])
            elif pd.api.types.is_datetime64_any_dtype(series) and series.notna().any():
                lo, hi = series.min(), series.max()
                old = self.times.get(column, (lo, hi))
                self.times[column] = (min(old[0], lo), max(old[1], hi))

    def document(self) -> dict:
        sample = pd.concat(self.samples, ignore_index=True) if self.samples else pd.DataFrame()
        stats: dict[str, dict] = {}
        for column, dtype in self.dtypes.items():
            entry: dict[str, Any] = {"dtype": dtype, "count": self.rows, "nulls": self.nulls[column]}
            if column in self.trues:
                valid = self.rows - self.nulls[column]
                entry["true_fraction"] = self.trues[column] / valid if valid else None
            elif column in self.moments:
                m = self.moments[column]
                if m.n:
                    values = sample[column].to_numpy(dtype=np.float64, na_value=np.nan)
                    values = values[~np.isnan(values)]
                    with np.errstate(invalid="ignore", over="ignore"):
                        q = np.quantile(values, [0.01, 0.25, 0.5, 0.75, 0.99]) if values.size else [np.nan] * 5
                    entry.update(min=m.lo, max=m.hi, mean=m.mean, std=float(np.sqrt(m.m2 / m.n)),
                                 quantiles=dict(zip(["p01", "p25", "p50", "p75", "p99"], map(float, q))))
            elif column in self.times or pd.api.types.is_datetime64_any_dtype(sample.get(column, pd.Series(dtype=object))):
                lo, hi = self.times.get(column, (None, None))
                entry.update(min=str(lo), max=str(hi))
            else:
                counts = sample[column].value_counts(dropna=True)
                entry.update(distinct_in_sample=int(counts.size), top={str(k): int(v) for k, v in counts.head(20).items()})
            stats[column] = entry
        return {"rows": self.rows, "columns": stats, "streamed": True}
