"""Ranking splits as positions into the clean interactions, leak-free by construction.

leave_last holds out each user's newest interactions, time cuts the whole log at one instant, random
holds out random interactions per user. Afterwards, a held-out (user, item) pair that also occurs in
an earlier part is removed from the held-out part (counted): such an item is excluded from ranking
at evaluation, so keeping it would only hide a row that cannot be hit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trainpipe.data.interactions import Interactions
from trainpipe.errors import SplitError

if TYPE_CHECKING:
    from trainpipe.ranking.config import RankingSplit

SPLITS = ("train", "validation", "test")


def _rank_from_end(user: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many of its user's interactions come after it (by key, then row), and the user's count."""
    order = np.lexsort((np.arange(len(user)), key, user))
    counts = np.bincount(user)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    pos_sorted = np.arange(len(user)) - starts[user[order]]
    rank = np.empty(len(user), dtype=np.int64)
    rank[order] = counts[user[order]] - 1 - pos_sorted
    return rank, counts[user]


def _per_user(user: np.ndarray, key: np.ndarray, n_test: int, n_val: int) -> np.ndarray:
    """0 train, 1 validation, 2 test; users too short to give one training row stay entirely in train."""
    rank, count = _rank_from_end(user, key)
    eligible = count > n_test + n_val
    part = np.zeros(len(user), dtype=np.int8)
    part[eligible & (rank < n_test)] = 2
    part[eligible & (rank >= n_test) & (rank < n_test + n_val)] = 1
    return part


def _global_time(times: np.ndarray, validation: float, test: float) -> np.ndarray:
    """Strict time cuts: every validation time is after every train time, every test time after both."""
    ordered = np.sort(times)
    n = len(ordered)
    t_test = ordered[min(n - 1, int(np.floor(n * (1 - test))))]
    t_val = ordered[min(n - 1, int(np.floor(n * (1 - test - validation))))]
    part = np.zeros(n, dtype=np.int8)
    part[times >= t_val] = 1
    part[times >= t_test] = 2
    return part


def _drop_seen_pairs(data: Interactions, part: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Remove from validation pairs seen in train, and from test pairs seen in train or validation."""
    pair = data.user * np.int64(data.n_items) + data.item
    removed = {}
    for level, name in ((1, "validation"), (2, "test")):
        earlier = np.unique(pair[(part < level) & (part >= 0)])
        seen = (part == level) & np.isin(pair, earlier)
        removed[name] = int(seen.sum())
        part = np.where(seen, -1, part)
    return part, removed


def make_split(data: Interactions, config: RankingSplit, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """Positions (sorted) of train/validation/test interactions and a summary for split.json."""
    if config.strategy == "time":
        part = _global_time(data.time, config.validation_fraction, config.test_fraction)
    else:
        if config.strategy == "random":
            key = np.random.default_rng(seed).random(len(data))
        else:
            key = data.time
        part = _per_user(data.user, key, config.test_per_user, config.validation_per_user)
    part, removed = _drop_seen_pairs(data, part)
    parts = {name: np.flatnonzero(part == level).astype(np.int64) for level, name in enumerate(SPLITS)}
    for name in SPLITS:
        if len(parts[name]) == 0:
            hint = ("lower ranking.min_user_interactions' bar or hold out fewer per user" if config.strategy != "time"
                    else "the timestamps may be too coarse for ranking.split.*_fraction")
            raise SplitError(f"ranking.split: the {name} part is empty ({len(data)} interactions, "
                             f"{data.n_users} users); {hint}", key="ranking.split.strategy")
    train_users = np.zeros(data.n_users, dtype=bool)
    train_users[data.user[parts["train"]]] = True
    summary = {"strategy": config.strategy, "sizes": {n: len(parts[n]) for n in SPLITS},
               "users": {n: len(np.unique(data.user[parts[n]])) for n in SPLITS},
               "cold_users": {n: int((~train_users[np.unique(data.user[parts[n]])]).sum()) for n in ("validation", "test")},
               "removed_seen_pairs": removed}
    return parts, summary
