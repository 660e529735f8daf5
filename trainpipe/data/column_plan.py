"""A fitted preprocessor read one output column at a time, straight from the frame's columns.

Why: a family that wants its inputs apart (torch_mlp: a float32 block of numbers, integer category indices) would
otherwise get the whole float32 matrix from `features.transform` and split and convert it again. This reads each
output column from its input column with the fitted step's own arithmetic (sklearn's operations, in its order and
dtype), so every value is bitwise what `transform` gives (tested). Only the steps torch_mlp's preprocessing is
built from are read (SimpleImputer on NaN, Standard/Robust/MinMax scaler, identity passthrough, CategoryCodes);
`column_plan` returns None for anything else, and `NumericColumn.values` returns None for input dtypes whose
conversion it does not reproduce (then the caller takes `transform`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import pandas as pd

from trainpipe.data.categories import CategoryCodes, positions


# A DataFrame, or its columns selected by name beforehand (threads then only read the Series: pandas' column access
# is not documented as thread-safe).
Columns = Union[pd.DataFrame, Mapping[str, pd.Series]]


@dataclass(frozen=True)
class NumericColumn:
    """One output column of a numeric part: NaN filled, then (operation, operand) applied in order, in float64."""

    name: str
    part: tuple[str, ...]  # every input column of its part: their dtypes jointly decide sklearn's arithmetic dtype
    fill: float | None
    ops: tuple[tuple[str, float], ...]  # ("sub" | "div" | "mul" | "add" | "max" | "min", operand)

    def values(self, frame: Columns) -> np.ndarray | None:
        """float64 values before the float32 cast, or None when the part's dtypes would make sklearn compute in
        another dtype (all float32, small ints with float32) or convert otherwise (extension, object, bool)."""
        if float64_part(frame, self.part) is None:
            return None
        x = frame[self.name].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        if self.fill is not None:
            np.copyto(x, self.fill, where=np.isnan(x))
        for op, operand in self.ops:
            UFUNCS[op](x, operand, out=x)  # sklearn's in-place X -= mean_, X /= scale_, ...: the same IEEE results
        return x


UFUNCS = {"sub": np.subtract, "div": np.divide, "mul": np.multiply, "add": np.add, "max": np.maximum,
          "min": np.minimum}


def float64_part(frame: Columns, names: tuple[str, ...]) -> bool | None:
    """True when sklearn turns these columns into one float64 array (ints, float64, or a mix that numpy promotes to
    float64); None otherwise."""
    dtypes = [frame[name].dtype for name in names]
    if not all(isinstance(d, np.dtype) and d.kind in "iuf" for d in dtypes):
        return None
    common = np.result_type(*dtypes)
    return True if common == np.float64 or common.kind in "iu" else None


@dataclass(frozen=True)
class CategoryColumn:
    """One output column of CategoryCodes: a code per training category, then the missing and unknown codes."""

    name: str
    value_set: list[str]
    table: np.ndarray  # float32, as CategoryCodes.code_table

    def lookup(self, frame: Columns, table: np.ndarray | None = None) -> np.ndarray:
        """Each row's entry of `table` (default: this column's float32 codes), indexed as code_table is."""
        return (self.table if table is None else table)[positions(frame[self.name], self.value_set)]


Column = NumericColumn | CategoryColumn


def column_plan(preprocessor: Any) -> list[Column] | None:
    """Each output column of a fitted ColumnTransformer in output order, when every part is one this module reads;
    else None."""
    from trainpipe.data.features import fitted_parts

    names = getattr(preprocessor, "feature_names_in_", None)
    if names is None:
        return None
    parts = fitted_parts(preprocessor, pd.DataFrame(columns=[str(n) for n in names]))
    if parts is None:
        return None
    plan: list[Column | None] = [None] * max(out.stop for _, _, out in parts)
    for step, columns, out in parts:
        read = category_columns(step, columns) if isinstance(step, CategoryCodes) else numeric_columns(step, columns)
        if read is None or len(read) != out.stop - out.start:
            return None
        plan[out] = read
    return None if any(column is None for column in plan) else plan  # type: ignore[return-value]


def category_columns(step: CategoryCodes, columns: list[str]) -> list[Column]:
    return [CategoryColumn(name, step.value_set(j), step.code_table(j)) for j, name in enumerate(columns)]


def numeric_columns(step: Any, columns: list[str]) -> list[Column] | None:
    """A Pipeline of an optional SimpleImputer then an optional scaler, or an identity FunctionTransformer."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    steps = [s for _, s in step.steps] if isinstance(step, Pipeline) else [step]
    fills: list[float | None] = [None] * len(columns)
    ops: list[list[tuple[str, float]]] = [[] for _ in columns]
    for position, part in enumerate(steps):
        if isinstance(part, SimpleImputer):
            # as transform assigns them: cast to the fit's dtype (constant fills are stored as objects)
            statistics = np.asarray(part.statistics_)
            fill_dtype = np.dtype(getattr(part, "_fill_dtype", statistics.dtype))
            statistics = statistics.astype(fill_dtype) if fill_dtype.kind == "f" else statistics
            if (position != 0 or part.add_indicator or not (isinstance(part.missing_values, float)
                                                            and np.isnan(part.missing_values))
                    or statistics.dtype.kind != "f" or np.isnan(statistics).any()):
                return None  # NaN statistics: sklearn drops those columns
            fills = [float(v) for v in statistics]
        else:
            step_ops = scaler_ops(part, len(columns))
            if step_ops is None:
                return None
            for mine, theirs in zip(ops, step_ops):
                mine.extend(theirs)
    part_names = tuple(columns)
    return [NumericColumn(name, part_names, fill, tuple(op)) for name, fill, op in zip(columns, fills, ops)]


def scaler_ops(step: Any, width: int) -> list[list[tuple[str, float]]] | None:
    """Per column, the operations of a fitted dense scaler's transform on float64 input, as sklearn 1.9 writes
    them; None for any other step."""
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, RobustScaler, StandardScaler

    if type(step) is FunctionTransformer:
        identity = step.func is None and step.inverse_func is None and not step.validate
        return [[] for _ in range(width)] if identity else None
    if type(step) is StandardScaler:
        return [[*([("sub", float(step.mean_[j]))] if step.with_mean else []),
                 *([("div", float(step.scale_[j]))] if step.with_std else [])] for j in range(width)]
    if type(step) is RobustScaler:
        return [[*([("sub", float(step.center_[j]))] if step.with_centering else []),
                 *([("div", float(step.scale_[j]))] if step.with_scaling else [])] for j in range(width)]
    if type(step) is MinMaxScaler:
        low, high = step.feature_range
        return [[("mul", float(step.scale_[j])), ("add", float(step.min_[j])),
                 *([("max", float(low)), ("min", float(high))] if step.clip else [])] for j in range(width)]
    return None
