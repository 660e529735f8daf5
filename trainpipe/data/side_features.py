"""User and item feature tables: read, check, encode and align to the interaction id codes.

Numeric columns are standardised (missing → 0, the mean); categorical columns become codes with 0
for missing or unseen values, for embeddings in the towers. The encoder's state is plain JSON, so
the packaged recommender can encode a new user's features exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trainpipe.errors import DataError

if TYPE_CHECKING:
    from trainpipe.ranking.config import FeatureTable


@dataclass
class FeatureEncoder:
    numeric: list[str]
    categorical: list[str]
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    vocab: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> FeatureEncoder:
        values = frame[numeric].to_numpy(dtype=np.float64, na_value=np.nan) if numeric else np.empty((len(frame), 0))
        mean = np.nan_to_num(np.nanmean(values, axis=0)) if len(frame) else np.zeros(len(numeric))
        std = np.nan_to_num(np.nanstd(values, axis=0)) if len(frame) else np.ones(len(numeric))
        vocab = {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}
        return cls(numeric, categorical, mean.tolist(), np.where(std > 0, std, 1.0).tolist(), vocab)

    @property
    def cardinalities(self) -> list[int]:
        return [len(self.vocab[c]) for c in self.categorical]

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if self.numeric:
            values = frame[self.numeric].to_numpy(dtype=np.float64, na_value=np.nan)
            num = np.nan_to_num((values - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)
        else:
            num = np.zeros((len(frame), 0), dtype=np.float32)
        codes = [pd.Index(self.vocab[c]).get_indexer(frame[c].astype("string").fillna("\0missing")) + 1
                 for c in self.categorical]  # -1 (unseen/missing) + 1 = 0
        cat = np.column_stack(codes).astype(np.int64) if codes else np.zeros((len(frame), 0), dtype=np.int64)
        return num, cat

    def state_dict(self) -> dict:
        return {"numeric": self.numeric, "categorical": self.categorical, "mean": self.mean, "std": self.std,
                "vocab": self.vocab}

    @classmethod
    def from_state(cls, state: dict) -> FeatureEncoder:
        return cls(**state)


def read_feature_table(table: FeatureTable, key: str) -> pd.DataFrame:
    """The table with its id and feature columns checked (one line naming the key and column)."""
    from trainpipe.data.io import DataConfig, read_table

    try:
        frame, _ = read_table(DataConfig(path=table.path))
    except DataError as exc:
        raise DataError(exc.message.replace("data.path", f"ranking.{key}.path"), key=f"ranking.{key}.path") from exc
    for column, sub in [(table.id, "id"), *((c, "numeric") for c in table.numeric),
                        *((c, "categorical") for c in table.categorical)]:
        if column not in frame.columns:
            raise DataError(f"ranking.{key}.{sub}: column {column!r} is not in {table.path}", key=f"ranking.{key}.{sub}")
    for column in table.numeric:
        series = frame[column]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            raise DataError(f"ranking.{key}.numeric: column {column!r} should hold numbers; list it under categorical",
                            key=f"ranking.{key}.numeric")
    ids = frame[table.id].astype(str)
    if ids.duplicated().any():
        raise DataError(f"ranking.{key}.id: {int(ids.duplicated().sum())} repeated id(s) in {table.path}, e.g. "
                        f"{ids[ids.duplicated()].iloc[0]!r}; one row per id", key=f"ranking.{key}.id")
    return frame


def aligned_features(table: FeatureTable, key: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, FeatureEncoder,
                                                                               dict]:
    """Feature rows in the order of the interaction codes; ids without a row get missing features."""
    frame = read_feature_table(table, key)
    encoder = FeatureEncoder.fit(frame, table.numeric, table.categorical)
    position = pd.Index(frame[table.id].astype(str)).get_indexer(pd.Index(ids).astype(str))
    rows = frame.iloc[np.maximum(position, 0)].reset_index(drop=True)
    num, cat = encoder.transform(rows)
    absent = position < 0
    num[absent], cat[absent] = 0.0, 0
    report = {"rows": len(frame), "matched": int((~absent).sum()), "without_features": int(absent.sum()),
              "numeric": table.numeric, "categorical": table.categorical}
    return num, cat, encoder, report
