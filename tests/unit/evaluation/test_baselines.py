"""Baselines: most-popular ranks by training count, PureSVD recovers block structure, random is seeded."""

import numpy as np
import torch

from trainpipe.evaluation import baselines
from trainpipe.evaluation.ranking_metrics import interaction_matrix, top_k


def test_popularity_orders_by_count():
    train = interaction_matrix(np.array([0, 1, 2, 0, 1, 0]), np.array([3, 3, 3, 1, 1, 2]), 3, 4)
    got, _ = top_k(baselines.popularity_scorer(train), np.array([2]), 3)
    assert got.tolist() == [[3, 1, 2]]


def test_svd_recommends_within_the_users_block():
    # two communities: users 0-9 like items 0-9, users 10-19 like items 10-19; each user misses one item
    users, items = [], []
    for u in range(20):
        block = range(10) if u < 10 else range(10, 20)
        for i in block:
            if i % 10 != u % 10:
                users.append(u)
                items.append(i)
    train = interaction_matrix(np.array(users), np.array(items), 20, 20)
    got, _ = top_k(baselines.svd_scorer(train, factors=2, seed=0), np.arange(20), 1, exclude=train)
    assert all((got[u, 0] < 10) == (u < 10) for u in range(20))
    assert all(got[u, 0] % 10 == u % 10 for u in range(20))  # the one missing item of the block


def test_random_is_seeded():
    score = baselines.random_scorer(30, seed=4)
    a = score(np.array([5, 6]))
    assert torch.equal(a, baselines.random_scorer(30, seed=4)(np.array([5, 6])))
    assert not torch.equal(a, baselines.random_scorer(30, seed=5)(np.array([5, 6])))
