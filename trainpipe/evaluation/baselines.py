"""Baselines scored by the same streamed top-K as the model: most-popular, random and PureSVD.

PureSVD (Cremonesi et al., 2010) scores a user's items by projecting their training row onto the top
singular vectors of the binary train matrix: scores = x_u V Vᵀ. It is the classical matrix
factorisation bar a learned retrieval model should clear.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from trainpipe.evaluation.ranking_metrics import DotScorer, ScoreFn

if TYPE_CHECKING:
    from trainpipe.ranking.config import RankingConfig


def popularity_scorer(train: sp.csr_matrix) -> DotScorer:
    """Training counts as a rank-1 product (1 per user × count per item): the same scores for every user."""
    counts = torch.from_numpy(np.asarray(train.sum(axis=0)).ravel().astype(np.float32))
    return DotScorer(torch.ones((train.shape[0], 1)), counts[:, None])


def random_scorer(n_items: int, seed: int) -> ScoreFn:
    """Uniform scores, seeded by the batch's first user so that results do not depend on call order."""
    def score(users: np.ndarray) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + int(users[0]) if len(users) else seed)
        return torch.rand((len(users), n_items), generator=generator)
    return score


def svd_factors(train: sp.csr_matrix, factors: int, seed: int) -> np.ndarray:
    """Item factors V (items × f) of the truncated SVD of the binary train matrix."""
    from scipy.sparse.linalg import svds

    k = max(1, min(factors, min(train.shape) - 1))
    v0 = np.random.default_rng(seed).standard_normal(min(train.shape)).astype(np.float64)
    _, _, vt = svds(train.astype(np.float64), k=k, v0=v0)
    return np.ascontiguousarray(vt.T.astype(np.float32))


def svd_scorer(train: sp.csr_matrix, factors: int, seed: int) -> DotScorer:
    """x_u V Vᵀ as user vectors x_u V (every user's, computed once) against the item factors V."""
    V = svd_factors(train, factors, seed)
    return DotScorer(torch.from_numpy(np.asarray(train @ V, dtype=np.float32)), torch.from_numpy(V))


def build(name: str, train: sp.csr_matrix, config: RankingConfig, seed: int) -> ScoreFn:
    if name == "popularity":
        return popularity_scorer(train)
    if name == "random":
        return random_scorer(train.shape[1], seed)
    return svd_scorer(train, config.svd_factors, seed)
