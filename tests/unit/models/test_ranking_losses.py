"""Each retrieval loss against its formula on a hand-made batch, and as a training signal."""

import math

import pytest
import torch
import torch.nn.functional as F

from trainpipe.models.ranking_losses import bpr, sampled_softmax, triplet


def batch():
    u = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=1)
    v = F.normalize(torch.tensor([[1.0, 0.2], [0.1, 1.0], [1.0, 0.0]]), dim=1)
    return u, v, torch.tensor([10, 11, 12])


def test_softmax_is_cross_entropy_over_in_batch_items_with_log_q():
    u, v, items = batch()
    log_q = torch.tensor([-1.0, -2.0, -3.0])
    got = sampled_softmax(u, v, items, scale=5.0, log_q=log_q)
    logits = (u @ v.T) * 5.0 - log_q[None, :]
    assert got.item() == pytest.approx(F.cross_entropy(logits, torch.arange(3)).item(), rel=1e-6)
    plain = sampled_softmax(u, v, items, scale=5.0)
    assert plain.item() == pytest.approx(F.cross_entropy((u @ v.T) * 5.0, torch.arange(3)).item(), rel=1e-6)


def test_softmax_masks_an_item_that_is_another_rows_positive():
    u, v, _ = batch()
    items = torch.tensor([10, 10, 12])  # rows 0 and 1 share an item: not a negative for each other
    got = sampled_softmax(u, v, items, scale=5.0)
    logits = (u @ v.T) * 5.0
    logits[0, 1] = logits[1, 0] = -math.inf
    assert got.item() == pytest.approx(F.cross_entropy(logits, torch.arange(3)).item(), rel=1e-6)


def test_extra_negatives_and_weights():
    u, v, items = batch()
    v_neg = F.normalize(torch.tensor([[0.5, -1.0]]), dim=1)
    w = torch.tensor([1.0, 0.0, 1.0])
    got = sampled_softmax(u, v, items, scale=2.0, weight=w, v_neg=v_neg, neg_items=torch.tensor([99]))
    logits = torch.cat([u @ v.T, u @ v_neg.T], dim=1) * 2.0
    per_row = F.cross_entropy(logits, torch.arange(3), reduction="none")
    assert got.item() == pytest.approx(((per_row * w).sum() / w.sum()).item(), rel=1e-6)


def test_bpr_and_triplet_formulas():
    u, v, items = batch()
    s = u @ v.T
    off = ~torch.eye(3, dtype=torch.bool)
    want_bpr = (-F.logsigmoid(s.diag()[:, None] - s) * off).sum(1) / 2
    assert bpr(u, v, items, scale=1.0).item() == pytest.approx(want_bpr.mean().item(), rel=1e-6)
    want_triplet = (torch.relu(0.3 - s.diag()[:, None] + s) * off).sum(1) / 2
    assert triplet(u, v, items, scale=1.0, margin=0.3).item() == pytest.approx(want_triplet.mean().item(), rel=1e-6)


@pytest.mark.parametrize("loss", [sampled_softmax, bpr, triplet])
def test_each_loss_learns_to_rank_the_positive_first(loss):
    torch.manual_seed(0)
    users, items = torch.nn.Embedding(8, 4), torch.nn.Embedding(8, 4)
    opt = torch.optim.Adam([*users.parameters(), *items.parameters()], lr=0.05)
    ids = torch.arange(8)
    for _ in range(200):
        u, v = F.normalize(users(ids), dim=1), F.normalize(items(ids), dim=1)
        value = loss(u, v, ids, scale=10.0)
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        ranked = (F.normalize(users(ids), dim=1) @ F.normalize(items(ids), dim=1).T).argmax(1)
    assert torch.equal(ranked, ids)  # user i's best item is its positive i
