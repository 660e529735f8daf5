"""Interactions table → clean, encoded arrays: ids present, positives only, duplicates, min counts.

Every step is a vectorised mask over whole columns; what each step dropped is counted for the
validation report, so a user sees why 1M rows became 800k.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trainpipe.errors import DataError, ValidationFailed

if TYPE_CHECKING:
    from trainpipe.ranking.config import RankingConfig


@dataclass(frozen=True)
class Interactions:
    """Encoded interactions: users and items as codes 0..n-1 into `user_ids` / `item_ids`."""

    user: np.ndarray  # int64
    item: np.ndarray  # int64
    time: np.ndarray  # float64: timestamp, or the row position when no time column is given
    weight: np.ndarray  # float32
    user_ids: np.ndarray  # original ids, sorted
    item_ids: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.user)

    def save(self, folder: Path) -> None:
        np.savez(folder / "interactions.npz", user=self.user, item=self.item, time=self.time, weight=self.weight)
        pd.DataFrame({"id": self.user_ids}).to_parquet(folder / "users.parquet", index=False)
        pd.DataFrame({"id": self.item_ids}).to_parquet(folder / "items.parquet", index=False)

    @classmethod
    def load(cls, folder: Path) -> Interactions:
        with np.load(folder / "interactions.npz") as arrays:
            parts = {k: arrays[k] for k in ("user", "item", "time", "weight")}
        return cls(**parts, user_ids=pd.read_parquet(folder / "users.parquet")["id"].to_numpy(),
                   item_ids=pd.read_parquet(folder / "items.parquet")["id"].to_numpy())


def check_columns(frame: pd.DataFrame, config: RankingConfig) -> list[str]:
    """One line per configured column that the table lacks."""
    shown = ", ".join(map(str, frame.columns[:12]))
    return [f"ranking.{key}: column {column!r} is not in the data (columns: {shown})"
            for key in ("user", "item", "time", "rating", "weight")
            if (column := getattr(config, key)) is not None and column not in frame.columns]


def _numeric(series: pd.Series, key: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        example = series.dropna().astype(str).head(1).tolist()
        raise ValidationFailed(f"ranking.{key}: column {series.name!r} should hold numbers"
                               + (f" but holds {example[0]!r}" if example else ""), key=f"ranking.{key}")
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _times(series: pd.Series) -> np.ndarray:
    """Numbers stay numbers; dates (or date strings) become nanoseconds; NaN marks a missing time."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    parsed = series if pd.api.types.is_datetime64_any_dtype(series) else pd.to_datetime(series, errors="coerce")
    if parsed.isna().all() and series.notna().any():
        raise ValidationFailed(f"ranking.time: column {series.name!r} holds neither numbers nor dates "
                               f"(e.g. {series.dropna().astype(str).iloc[0]!r})", key="ranking.time")
    values = parsed.astype("datetime64[ns]").to_numpy().astype("int64").astype(np.float64)
    values[parsed.isna().to_numpy()] = np.nan
    return values


def _min_count_filter(user: np.ndarray, item: np.ndarray, min_user: int, min_item: int) -> tuple[np.ndarray, int]:
    """Rows kept after repeatedly dropping rare users and items (dropping one can make the other rare)."""
    keep = np.ones(len(user), dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        u_counts = np.bincount(user[keep], minlength=user.max(initial=-1) + 1)
        i_counts = np.bincount(item[keep], minlength=item.max(initial=-1) + 1)
        new = keep & (u_counts[user] >= min_user) & (i_counts[item] >= min_item)
        if new.sum() == keep.sum() or rounds >= 100:
            return new, rounds
        keep = new


def prepare(frame: pd.DataFrame, config: RankingConfig) -> tuple[Interactions, dict]:
    """Validate and clean the interactions table; returns the encoded interactions and the report."""
    missing = check_columns(frame, config)
    if missing:
        raise ValidationFailed(missing[0] if len(missing) == 1 else f"{len(missing)} problems: " + "; ".join(missing),
                               key=missing[0].split(":")[0], lines=missing)
    dropped: dict[str, int] = {}
    warnings: list[str] = []
    keep = (frame[config.user].notna() & frame[config.item].notna()).to_numpy().copy()
    dropped["missing_id"] = int((~keep).sum())
    if config.rating is not None:
        rating = _numeric(frame[config.rating], "rating")
        if config.positive_threshold is not None:
            positive = rating >= config.positive_threshold  # NaN ratings are not positives
            dropped["below_threshold"] = int((keep & ~positive).sum())
            keep &= positive
    times = _times(frame[config.time]) if config.time else np.arange(len(frame), dtype=np.float64)
    if config.time:
        dropped["missing_time"] = int((keep & np.isnan(times)).sum())
        keep &= ~np.isnan(times)
    weight = np.ones(len(frame), dtype=np.float32)
    if config.weight is not None:
        raw = _numeric(frame[config.weight], "weight")
        bad = keep & ~(raw >= 0)
        if bad.any():
            raise ValidationFailed(f"ranking.weight: column {config.weight!r} has {int(bad.sum())} missing or negative "
                                   "value(s); weights must be >= 0", key="ranking.weight")
        weight = raw.astype(np.float32)

    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise ValidationFailed("ranking: no interaction is left after dropping missing ids"
                               + (" and ratings below ranking.positive_threshold" if config.positive_threshold is not None
                                  else ""), key="ranking.positive_threshold" if config.positive_threshold else "ranking.user")
    user_codes, user_ids = pd.factorize(frame[config.user].to_numpy()[rows], sort=True)
    item_codes, item_ids = pd.factorize(frame[config.item].to_numpy()[rows], sort=True)
    user, item, times, weight = user_codes.astype(np.int64), item_codes.astype(np.int64), times[rows], weight[rows]

    # Duplicates: order by (user, item, time, row) so first/last are by time, ties by row order.
    order = np.lexsort((np.arange(len(rows)), times, item, user))
    pair = user[order] * np.int64(len(item_ids)) + item[order]
    starts = np.r_[True, pair[1:] != pair[:-1]]
    repeats = int(len(pair) - starts.sum())
    dropped["duplicates"] = 0
    if repeats:
        if config.duplicates == "error":
            first = order[np.flatnonzero(~starts)[0]]
            raise ValidationFailed(f"ranking.duplicates: {repeats} repeated (user, item) pair(s), e.g. user "
                                   f"{user_ids[user[first]]!r} item {item_ids[item[first]]!r}; set ranking.duplicates to "
                                   "last, first or keep", key="ranking.duplicates")
        if config.duplicates in ("first", "last"):
            ends = np.r_[pair[1:] != pair[:-1], True]
            chosen = order[starts if config.duplicates == "first" else ends]
            dropped["duplicates"] = repeats
            user, item, times, weight = user[chosen], item[chosen], times[chosen], weight[chosen]
        else:
            warnings.append(f"{repeats} repeated (user, item) pairs kept (ranking.duplicates: keep)")

    kept, rounds = _min_count_filter(user, item, config.min_user_interactions, config.min_item_interactions)
    dropped["min_interactions"] = int((~kept).sum())
    user, item, times, weight = user[kept], item[kept], times[kept], weight[kept]
    if len(user) == 0:
        raise ValidationFailed(f"ranking.min_user_interactions: no interaction is left after dropping users with fewer "
                               f"than {config.min_user_interactions} and items with fewer than "
                               f"{config.min_item_interactions} interactions", key="ranking.min_user_interactions")
    # Re-encode so that dropped users/items leave no empty codes behind.
    u_used, user = np.unique(user, return_inverse=True)
    i_used, item = np.unique(item, return_inverse=True)
    result = Interactions(user=user.astype(np.int64), item=item.astype(np.int64), time=times.astype(np.float64),
                          weight=weight.astype(np.float32), user_ids=np.asarray(user_ids)[u_used],
                          item_ids=np.asarray(item_ids)[i_used])
    for reason, count in dropped.items():
        if count:
            warnings.append(f"dropped {count:,} row(s): {reason.replace('_', ' ')}")
    report = {"rows": len(frame), "interactions": len(result), "users": result.n_users, "items": result.n_items,
              "dropped": dropped, "filter_rounds": rounds, "density": len(result) / max(result.n_users * result.n_items, 1),
              "warnings": warnings}
    return result, report


def require_columns(frame: pd.DataFrame, config: RankingConfig) -> None:
    """Fail fast (ingest) with one line per missing configured column."""
    missing = check_columns(frame, config)
    if missing:
        raise DataError(missing[0] if len(missing) == 1 else f"{len(missing)} problems: " + "; ".join(missing),
                        key=missing[0].split(":")[0], lines=missing)
