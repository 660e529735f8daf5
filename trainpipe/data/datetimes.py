"""Datetime columns as calendar numbers a model can split or scale: year, month, day, weekday, day of year, hour."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour")


def as_datetimes(column: Any) -> pd.Series:
    """Datetimes without a timezone (aware ones in UTC); text is parsed, what does not parse is missing."""
    series = column if isinstance(column, pd.Series) else pd.Series(column)
    if not pd.api.types.is_datetime64_any_dtype(series):
        series = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series


class DatetimeParts(TransformerMixin, BaseEstimator):
    """Each datetime column -> float32 year, month, day, dayofweek, dayofyear, hour (NaN where missing)."""

    def fit(self, X: Any, y: Any = None) -> Self:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "feature_names_in_")
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=self.feature_names_in_)
        out = np.empty((len(frame), self.n_features_in_ * len(PARTS)), dtype=np.float32)
        for j, name in enumerate(frame.columns):
            values = as_datetimes(frame[name]).dt
            for k, part in enumerate(PARTS):
                out[:, j * len(PARTS) + k] = getattr(values, part).to_numpy(dtype=np.float32, na_value=np.nan)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "feature_names_in_")
        return np.asarray([f"{name}_{part}" for name in self.feature_names_in_ for part in PARTS], dtype=object)
