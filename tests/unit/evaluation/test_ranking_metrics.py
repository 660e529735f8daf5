"""Ranking metrics against a hand-computed example; the fast streamed top-K and metrics equal the plain NumPy
reference (evaluation/ranking_reference.py) on small data full of ties and seen items."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from trainpipe.evaluation.ranking_metrics import (DotScorer, block_top_k, evaluate, interaction_matrix, per_user_metrics,
                                                  top_k)
from trainpipe.evaluation.ranking_reference import reference_per_user, reference_top_k


def test_hand_computed_example():
    # user 0: relevant {2, 5}; ranked [2, 7, 5, 1]  -> hits at ranks 1 and 3
    # user 1: relevant {4};    ranked [0, 1, 3, 6]  -> no hit
    top = np.array([[2, 7, 5, 1], [0, 1, 3, 6]])
    relevant = interaction_matrix(np.array([0, 0, 1]), np.array([2, 5, 4]), 2, 8)
    m = per_user_metrics(top, relevant, [1, 3])
    assert m["recall_at_1"].tolist() == [0.5, 0.0] and m["recall_at_3"].tolist() == [1.0, 0.0]
    assert m["hit_rate_at_1"].tolist() == [1.0, 0.0]
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg_at_3"][0] == pytest.approx(dcg / idcg) and m["ndcg_at_1"][0] == 1.0
    assert m["mrr"].tolist() == [1.0, 0.0]


def test_evaluate_excludes_training_items_and_reports_catalogue_metrics():
    scores = torch.tensor([[9.0, 8.0, 7.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    seen = interaction_matrix(np.array([0]), np.array([0]), 2, 4)  # user 0 saw item 0: it may not be ranked
    relevant = interaction_matrix(np.array([0, 1]), np.array([1, 3]), 2, 4)
    summary, per_user = evaluate(lambda users: scores[torch.from_numpy(users)].clone(), relevant, seen, [1],
                                 popularity=np.array([4.0, 2.0, 1.0, 1.0]))
    assert per_user["recall_at_1"].tolist() == [1.0, 1.0]  # item 1 is user 0's best once item 0 is excluded
    assert summary["coverage_at_1"] == 0.5
    assert summary["popularity_bias_at_1"] == pytest.approx(((2.0 + 1.0) / 2) / 2.0)


@pytest.mark.parametrize("batch_users", [1, 7, 64])
def test_streamed_top_k_equals_a_dense_reference(batch_users):
    rng = np.random.default_rng(0)
    n_users, n_items, k = 50, 40, 6
    scores = torch.from_numpy(rng.standard_normal((n_users, n_items)).astype(np.float32))
    exclude = sp.random(n_users, n_items, density=0.3, random_state=1, format="csr")
    exclude.data[:] = 1
    users = rng.permutation(n_users)[:30]
    got, got_scores = top_k(lambda u: scores[torch.from_numpy(u)].clone(), users, k, exclude, batch_users)
    dense = scores.numpy().copy()
    dense[exclude.toarray() > 0] = -np.inf
    want = np.argsort(-dense[users], axis=1, kind="stable")[:, :k]
    assert np.array_equal(got, want)
    assert np.allclose(got_scores, np.take_along_axis(dense[users], want, axis=1))


def test_fewer_unseen_items_than_k_are_marked():
    exclude = interaction_matrix(np.array([0, 0]), np.array([0, 1]), 1, 3)
    got, _ = top_k(lambda u: torch.zeros((len(u), 3)), np.array([0]), 3, exclude)
    assert got.tolist() == [[2, -1, -1]]


def tied_factors(n_users: int, n_items: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Small-integer vectors: every score is exact in float32 whatever the summation order, and ties abound."""
    rng = np.random.default_rng(seed)
    return (torch.from_numpy(rng.integers(-1, 2, (n_users, 3)).astype(np.float32)),
            torch.from_numpy(rng.integers(-1, 2, (n_items, 3)).astype(np.float32)))


@pytest.mark.parametrize("batch_users, k", [(1, 5), (16, 5), (64, 12), (64, 60)])
def test_fast_top_k_equals_the_numpy_reference_with_ties_and_seen_items(batch_users, k):
    U, V = tied_factors(40, 50, seed=batch_users + k)
    exclude = sp.random(40, 50, density=0.4, random_state=k, format="csr")
    exclude.data[:] = 1
    users = np.random.default_rng(0).permutation(40)[:33]
    want = reference_top_k(DotScorer(U, V), users, k, exclude)
    got, got_scores = top_k(DotScorer(U, V), users, k, exclude, batch_users)
    assert np.array_equal(got, want)  # same items, same order: ties broken by the lower item code
    assert (got[:, -1] == -1).any() if k == 60 else (got >= 0).all()  # k = 60 > 50 items: the tail is -1
    dense = (U @ V.T).numpy()
    assert np.array_equal(got_scores[got >= 0], dense[np.repeat(users, k).reshape(-1, k)[got >= 0], got[got >= 0]])


def test_a_row_tied_at_the_cut_keeps_the_lowest_item_codes():
    scores = torch.tensor([[0.5, 1.0, 1.0, 1.0, 2.0, 1.0], [3.0, 2.0, 1.0, 0.0, -1.0, -2.0]])
    items, values = block_top_k(scores.clone(), 3)
    assert items.tolist() == [[4, 1, 2], [0, 1, 2]]
    assert values.tolist() == [[2.0, 1.0, 1.0], [3.0, 2.0, 1.0]]


def test_fast_metrics_equal_the_reference_definitions():
    U, V = tied_factors(60, 30, seed=3)
    rng = np.random.default_rng(1)
    relevant = interaction_matrix(rng.integers(0, 60, 90), rng.integers(0, 30, 90), 60, 30)
    seen = interaction_matrix(rng.integers(0, 60, 200), rng.integers(0, 30, 200), 60, 30)
    seen = (seen - seen.multiply(relevant)).tocsr()  # a relevant item is never among the excluded ones
    seen.eliminate_zeros()
    summary, per_user = evaluate(DotScorer(U, V), relevant, seen, [1, 5, 10], np.ones(30), batch_users=7)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    want = reference_per_user(reference_top_k(DotScorer(U, V), users, 10, seen), relevant[users], [1, 5, 10])
    assert set(want) == set(per_user)
    for name, values in want.items():
        assert np.allclose(per_user[name], values, rtol=0, atol=1e-12), name
