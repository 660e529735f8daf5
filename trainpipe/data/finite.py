"""Infinite numbers in numeric columns: found once, named by column, refused or made missing.

Features are cast to float32 before training (data/features.py `transform`), so a value beyond
float32's range (|x| > 3.4e38, e.g. 1e308) becomes inf there too. XGBoost and LightGBM stop on
inf with a C++ stack trace; torch trains to NaN. The same check runs on the training table (the
validate stage, `trainpipe validate`) and on prediction input (`trainpipe predict`, the pyfunc),
and `data.infinite: missing` turns such values into missing ones on both paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from trainpipe.errors import DataError

InfinitePolicy = Literal["error", "missing"]
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _out_of_range(values: np.ndarray) -> np.ndarray:
    if values.dtype.itemsize <= 4:  # float32/16 cannot exceed float32's range: only ±inf (and no float64 copy)
        return np.isinf(values)
    with np.errstate(invalid="ignore"):
        return np.abs(values) > FLOAT32_MAX  # ±inf included; NaN compares False


def _values(series: pd.Series) -> np.ndarray:
    """The column as a numpy float array, without a copy for numpy float dtypes (nullable ones: NaN for NA)."""
    return series.to_numpy() if isinstance(series.dtype, np.dtype) else series.to_numpy(dtype=np.float64,
                                                                                      na_value=np.nan)


def infinite_counts(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> dict[str, tuple[int, float]]:
    """{column: (how many values, first such value)} over float columns (integers cannot hold inf)."""
    found = {}
    for column in (frame.columns if columns is None else columns):
        series = frame[column]
        if not (pd.api.types.is_float_dtype(series) and not isinstance(series.dtype, pd.CategoricalDtype)):
            continue
        values = _values(series)
        bad = _out_of_range(values)
        if bad.any():
            found[str(column)] = (int(bad.sum()), float(values[np.argmax(bad)]))
    return found


def describe(column: str, count: int, example: float) -> str:
    return (f"column {column!r}: {count} value(s) infinite or beyond float32's range (±3.4e38), e.g. {example:g}; "
            "fix the data, or set data.infinite: missing to treat them as missing values")


def apply_infinite_policy(frame: pd.DataFrame, policy: InfinitePolicy, source: str,
                          columns: Iterable[str] | None = None) -> pd.DataFrame:
    """`error`: raise naming the first column with such values; `missing`: a copy with them as NaN."""
    found = infinite_counts(frame, columns)
    if not found:
        return frame
    if policy == "error":
        column, (count, example) = next(iter(found.items()))
        raise DataError(f"{source}: {describe(column, count, example)}", key=f"column {column}")
    frame = frame.copy(deep=False)  # only the replaced columns are new
    for column in found:
        values = frame[column]
        frame[column] = values.mask(pd.Series(_out_of_range(_values(values)), index=values.index))
    return frame
