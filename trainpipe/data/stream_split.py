"""The split of a streamed table: each row's part is a pure function of (seed, its key), so it is the same
whatever the batch size, the number of files or the process that computes it.

The key is the row's position (or `data.id_column`'s value, so that rows keep their part when files are
reordered), or the group (`split.strategy: group`: a whole group goes to one part). The key is hashed with the
seed (splitmix64, vectorised: no per-row Python) to a number in [0, 1) and cut at the split fractions, so part
sizes are the fractions up to sampling error (binomial: ±0.3% of the rows at 100k rows), not exact counts, and
classes are not stratified: at the sizes streaming is for, each part's class balance matches the table's within
that same error (split.json records the class counts per part).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele et al.): a bijective mix of 64-bit keys; uint64 arithmetic wraps."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += _GOLDEN
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def uniform(keys: np.ndarray, seed: int, salt: int = 0) -> np.ndarray:
    """A number in [0, 1) per 64-bit key, a pure function of (key, seed, salt)."""
    mixed_seed = _splitmix64(np.array([seed * 1_000_003 + salt], dtype=np.uint64))[0]
    return (_splitmix64(keys.astype(np.uint64) ^ mixed_seed) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def keys_of(values: pd.Series) -> np.ndarray:
    """64-bit keys of column values (ids or groups): pandas' vectorised hash, stable across processes."""
    return pd.util.hash_array(values.astype(object).to_numpy(), categorize=True)


def assign(keys: np.ndarray, seed: int, validation: float, test: float) -> np.ndarray:
    """0 train, 1 validation, 2 test for each key."""
    u = uniform(keys, seed, salt=1)
    return np.where(u < 1.0 - validation - test, 0, np.where(u < 1.0 - test, 1, 2)).astype(np.int8)


def batch_keys(offset: int, frame: pd.DataFrame, key_column: str | None) -> np.ndarray:
    if key_column is None:
        return np.arange(offset, offset + len(frame), dtype=np.uint64)
    return keys_of(frame[key_column])
