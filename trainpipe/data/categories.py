"""Category columns to integer codes, as a scikit-learn transformer backed by Arrow hash lookups.

Written by hand because scikit-learn's OrdinalEncoder checks and encodes object arrays with sorted
`np.isin`/`searchsorted` passes over Python strings: with the string conversion it needs, ~1 s per
million rows for four columns, the largest cost of batch predict. `pyarrow.compute.index_in` does the
same lookup in a hash table (~15 ms per column per million rows). The semantics follow OrdinalEncoder:
categories sorted, `min_frequency`/`max_categories` group rare training categories into one extra code,
unknown and missing values get their own configured codes.
"""

from __future__ import annotations

import os
from typing import Any, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


def arrow_text(column: Any) -> pa.Array:
    """One column as Arrow strings (string or large_string, as stored) with nulls for missing; numbers and bools
    become their text."""
    series = column if isinstance(column, pd.Series) else pd.Series(column)
    if not (pd.api.types.is_string_dtype(series) and not pd.api.types.is_object_dtype(series)):
        series = series.astype("string")  # object, category, bool, numbers: vectorised text conversion
    array = pa.array(series, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array


def as_text(column: Any) -> pa.Array:
    """`arrow_text` as large_string: one type for every column, whatever its storage."""
    return arrow_text(column).cast(pa.large_string())


PARALLEL_ROWS = 100_000  # below this, threads cost more than they save (column work: here, features.transform, the fold)
MISSING, UNKNOWN = -2, -1  # `positions` for a missing value and for one not in the value set


def positions(column: Any, value_set: list[str]) -> np.ndarray:
    """Each row's position in `value_set` by its text: UNKNOWN when absent, MISSING when the row has no value.

    String columns (pandas' string dtypes) are looked up row by row in Arrow's hash table. Any other column (bool,
    numbers, object) is factorized first and only its distinct values become text: converting a million
    bools or Python strings to Arrow text costs more than the lookup itself. A category column needs no factorizing:
    its categories are looked up, then gathered by its codes (~2 against ~5 ms per million rows)."""
    series = column if isinstance(column, pd.Series) else pd.Series(column)
    if isinstance(series.dtype, pd.StringDtype):
        values = arrow_text(series)
        if values.type not in (pa.string(), pa.large_string()):
            values = values.cast(pa.large_string())
        index = pc.index_in(values, value_set=pa.array(value_set, type=values.type))
        found = index.fill_null(UNKNOWN).to_numpy(zero_copy_only=False)
        if values.null_count:
            found = np.where(values.is_null().to_numpy(zero_copy_only=False), MISSING, found)
        return found
    if isinstance(series.dtype, pd.CategoricalDtype):  # Parquet text read as dictionaries: its codes index its categories
        of_category = np.append(positions(pd.Series(series.cat.categories), value_set), MISSING).astype(np.int32)
        return of_category[series.cat.codes.to_numpy()]  # code -1 (missing) picks the appended MISSING
    row_codes, uniques = pd.factorize(series)  # missing values (None, NaN, NA) get -1
    if len(uniques) == 0:
        return np.full(len(series), MISSING, dtype=np.int32)
    text = as_text(pd.Series(uniques))
    known = pc.index_in(text, value_set=pa.array(value_set, type=pa.large_string()))
    of_unique = np.append(known.fill_null(UNKNOWN).to_numpy(zero_copy_only=False), MISSING).astype(np.int32)
    return of_unique[row_codes]  # row code -1 (missing) picks the appended MISSING


def frequent_categories(values: pa.Array, max_categories: int | None, min_frequency: int | None) -> tuple[list, list]:
    """(frequent sorted, infrequent) training categories, grouped the way OrdinalEncoder groups them."""
    counts = pc.value_counts(values.drop_null())
    pairs = sorted(zip(counts.field("values").to_pylist(), counts.field("counts").to_numpy().tolist()))
    names = [name for name, _ in pairs]
    freq = np.asarray([count for _, count in pairs], dtype=np.int64)
    keep = np.ones(len(names), dtype=bool)
    if min_frequency is not None:
        keep &= freq >= min_frequency
    if max_categories is not None and keep.sum() >= max_categories:
        # OrdinalEncoder counts the infrequent group as one of max_categories; the least frequent go
        # first, ties in sorted order (its stable argsort)
        kept = np.flatnonzero(keep)
        drop = kept[np.argsort(freq[kept], kind="mergesort")][: len(kept) - (max_categories - 1)]
        keep[drop] = False
    frequent = sorted(n for n, k in zip(names, keep) if k)
    infrequent = sorted(n for n, k in zip(names, keep) if not k)
    return frequent, infrequent


class CategoryCodes(TransformerMixin, BaseEstimator):
    """Columns of categories -> float32 codes 0..k-1 (k: the infrequent group, when there is one)."""

    def __init__(self, max_categories: int | None = None, min_frequency: int | None = None,
                 unknown_value: float = np.nan, missing_value: float = np.nan):
        self.max_categories = max_categories
        self.min_frequency = min_frequency
        self.unknown_value = unknown_value
        self.missing_value = missing_value

    def fit(self, X: Any, y: Any = None) -> Self:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
        self.n_features_in_ = frame.shape[1]
        self.categories_, self.infrequent_categories_ = [], []
        for name in frame.columns:
            frequent, infrequent = frequent_categories(as_text(frame[name]), self.max_categories, self.min_frequency)
            self.categories_.append(frequent)
            self.infrequent_categories_.append(infrequent)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "categories_")
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=self.feature_names_in_)
        out = np.empty((len(frame), self.n_features_in_), dtype=np.float32)
        columns = [frame.iloc[:, j] for j in range(self.n_features_in_)]  # selected here: threads only read them

        def code(j: int) -> None:
            out[:, j] = self.code_table(j)[positions(columns[j], self.value_set(j))]

        if len(frame) >= PARALLEL_ROWS and self.n_features_in_ > 1:  # Arrow's lookups and the gathers release the GIL
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(self.n_features_in_, os.cpu_count() or 1), thread_name_prefix="codes") as pool:
                list(pool.map(code, range(self.n_features_in_)))  # list(): a column's error is raised here
        else:
            for j in range(self.n_features_in_):
                code(j)
        return out

    def value_set(self, j: int) -> list[str]:
        """Column j's training categories as `positions` looks them up: the frequent, then the infrequent."""
        return self.categories_[j] + self.infrequent_categories_[j]

    def code_table(self, j: int) -> np.ndarray:
        """Column j's code for each `positions` value, one gather: frequent categories keep theirs, every infrequent
        one shares code k; the last two entries are what MISSING (-2) and UNKNOWN (-1) index."""
        check_is_fitted(self, "categories_")
        frequent, infrequent = self.categories_[j], self.infrequent_categories_[j]
        return np.concatenate([np.arange(len(frequent)), np.full(len(infrequent), len(frequent)),
                               [self.missing_value, self.unknown_value]]).astype(np.float32)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "categories_")
        return np.asarray(self.feature_names_in_, dtype=object)
