"""Synthetic implicit feedback from a known latent-factor model with popularity skew (seeded).

Each user u and item j have factors; item j also has a popularity bias from a Zipf-like law. A user's
affinity for an item is `strength · u·v_j + popularity · bias_j`, and the user's items are drawn
without replacement with probability ∝ exp(affinity) (Gumbel top-k, a batch of users at a time, no
per-row Python). Because the model is known, so are each user's truly relevant items
(`SyntheticInteractions.true_top`), and the popularity baseline is beatable by exactly as much as
the latent factors matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SyntheticInteractions:
    frame: pd.DataFrame  # user_id, item_id, timestamp, rating
    user_factors: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    strength: float
    popularity: float

    def affinity(self, users: np.ndarray) -> np.ndarray:
        return self.strength * self.user_factors[users] @ self.item_factors.T + self.popularity * self.item_bias

    def true_top(self, n: int, users: np.ndarray | None = None) -> np.ndarray:
        """Item codes (item_id - 1) of each user's n highest-affinity items, best first."""
        users = np.arange(len(self.user_factors)) if users is None else users
        scores = self.affinity(users)
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)


def synthetic_interactions(users: int = 2000, items: int = 1000, interactions: int = 50_000, factors: int = 16,
                           strength: float = 10.0, popularity: float = 0.5, seed: int = 0,
                           batch_users: int = 512) -> SyntheticInteractions:
    """A seeded implicit-feedback log: about `interactions` rows, every user with at least 3."""
    rng = np.random.default_rng(seed)
    U = (rng.standard_normal((users, factors)) / np.sqrt(factors)).astype(np.float32)
    V = rng.standard_normal((items, factors)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    bias = (-np.log1p(rng.permutation(items))).astype(np.float32)  # Zipf-like: popularity ∝ 1/rank
    bias -= bias.mean()
    # Heavy-tailed activity, scaled to the requested total and capped at half the catalogue.
    activity = rng.lognormal(0.0, 0.8, users)
    counts = np.clip(np.round(activity / activity.sum() * interactions), 3, max(3, items // 2)).astype(np.int64)
    model = SyntheticInteractions(pd.DataFrame(), U, V, bias, strength, popularity)
    user_col, item_col = [], []
    for start in range(0, users, batch_users):
        batch = np.arange(start, min(start + batch_users, users))
        n = counts[batch]
        perturbed = model.affinity(batch) + rng.gumbel(size=(len(batch), items)).astype(np.float32)
        n_max = int(n.max())
        top = np.argpartition(-perturbed, n_max - 1, axis=1)[:, :n_max]
        order = np.argsort(-np.take_along_axis(perturbed, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        keep = np.arange(n_max)[None, :] < n[:, None]
        user_col.append(np.broadcast_to(batch[:, None], top.shape)[keep])
        item_col.append(top[keep])
    user, item = np.concatenate(user_col), np.concatenate(item_col)
    # Times: a random order within each user's history, over one year of seconds.
    timestamp = rng.integers(1_600_000_000, 1_600_000_000 + 365 * 86400, len(user))
    z = (model.strength * np.einsum("ij,ij->i", U[user], V[item]))
    z = (z - z.mean()) / (z.std() or 1.0) + rng.normal(0, 0.5, len(user))
    rating = np.clip(np.round(3.5 + 1.1 * z), 1, 5).astype(np.int64)
    shuffle = rng.permutation(len(user))
    frame = pd.DataFrame({"user_id": user[shuffle] + 1, "item_id": item[shuffle] + 1,
                          "timestamp": timestamp[shuffle], "rating": rating[shuffle]})
    return SyntheticInteractions(frame, U, V, bias, strength, popularity)


def movielens_like(users: int = 600, items: int = 400, interactions: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """A ratings table shaped like MovieLens's ratings.csv: userId, movieId, rating (1-5), timestamp."""
    frame = synthetic_interactions(users, items, interactions, seed=seed).frame
    return frame.rename(columns={"user_id": "userId", "item_id": "movieId"})[["userId", "movieId", "rating", "timestamp"]]
