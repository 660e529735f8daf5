"""The fused in-batch softmax (models/fused_softmax.py) is the composed cross-entropy: same loss and gradients
(user side, items, extra negatives, a learned scale), masked pairs (by sorting, or one comparison when many) equal the full comparison."""

import pytest
import torch
import torch.nn.functional as F

from trainpipe.models.fused_softmax import mask_same_items, same_item_pairs
from trainpipe.models.ranking_losses import sampled_softmax


def composed(u, v, items, scale, weight, log_q, v_neg, neg_items, neg_log_q):
    candidates, codes, correction = torch.cat([v, v_neg]), torch.cat([items, neg_items]), torch.cat([log_q, neg_log_q])
    logits = (u * scale) @ candidates.T - correction[None, :]
    duplicate = codes[None, :] == items[:, None]
    duplicate[torch.arange(len(items)), torch.arange(len(items))] = False
    per_row = F.cross_entropy(logits.masked_fill(duplicate, float("-inf")), torch.arange(len(items)), reduction="none")
    return (per_row * weight).sum() / weight.sum()


@pytest.mark.parametrize("b, d", [(40, 8), (300, 32)])
def test_fused_softmax_loss_and_gradients_equal_the_composed_cross_entropy(b, d):
    gen = torch.Generator().manual_seed(b)
    leaves = {"u": F.normalize(torch.randn(b, d, generator=gen), dim=1), "v": F.normalize(torch.randn(b, d, generator=gen), dim=1),
              "v_neg": F.normalize(torch.randn(7, d, generator=gen), dim=1), "log_scale": torch.tensor(2.3)}
    items = torch.randint(0, b // 4, (b,), generator=gen)  # many repeated items: masked pairs in most rows
    neg_items = torch.randint(0, b // 4, (7,), generator=gen)
    log_q, neg_log_q = -torch.rand(b, generator=gen) * 5, -torch.rand(7, generator=gen) * 5
    weight = torch.rand(b, generator=gen)
    results = []
    for fn in ("fused", "composed"):
        x = {k: t.clone().requires_grad_() for k, t in leaves.items()}
        scale = x["log_scale"].exp()
        if fn == "fused":
            loss = sampled_softmax(x["u"], x["v"], items, scale, weight=weight, log_q=log_q, v_neg=x["v_neg"],
                                   neg_items=neg_items, neg_log_q=neg_log_q)
        else:
            loss = composed(x["u"], x["v"], items, scale, weight, log_q, x["v_neg"], neg_items, neg_log_q)
        loss.backward()
        results.append((loss.detach(), {k: t.grad for k, t in x.items()}))
    (fused, fused_grads), (want, want_grads) = results
    assert torch.allclose(fused, want, rtol=1e-5, atol=1e-6)
    for name, grad in want_grads.items():
        assert torch.allclose(fused_grads[name], grad, rtol=1e-4, atol=1e-6), name


def test_same_item_pairs_are_the_full_comparison_without_the_diagonal():
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        items = torch.randint(0, 9, (60,), generator=gen)
        codes = torch.cat([items, torch.randint(0, 12, (15,), generator=gen)])
        rows, columns = same_item_pairs(items, codes)
        want = codes[None, :] == items[:, None]
        want[torch.arange(60), torch.arange(60)] = False
        got = torch.zeros_like(want)
        got[rows, columns] = True
        assert torch.equal(got, want) and len(rows) == int(want.sum())  # each pair once
        assert same_item_pairs(items, codes, limit=len(rows) // 2) is None  # too many: the caller compares instead


@pytest.mark.parametrize("distinct", [3, 500])
def test_mask_same_items_by_pairs_or_by_one_comparison_gives_the_same_mask(distinct):
    gen = torch.Generator().manual_seed(distinct)
    items = torch.randint(0, distinct, (200,), generator=gen)
    codes = torch.cat([items, torch.randint(0, distinct, (30,), generator=gen)])
    logits = torch.randn(200, 230, generator=gen)
    want = logits.clone()
    duplicate = codes[None, :] == items[:, None]
    duplicate[torch.arange(200), torch.arange(200)] = False
    want[duplicate] = float("-inf")
    mask_same_items(logits, items, codes)
    assert torch.equal(logits, want)
    assert (same_item_pairs(items, codes, limit=200 * 230 // 64) is None) == (distinct == 3)  # both paths run


def test_a_second_backward_through_the_same_graph_fails_loudly():
    """The backward turns the saved log-probabilities into the softmax in place: a reuse must not read them."""
    u = F.normalize(torch.randn(8, 4), dim=1).requires_grad_()
    loss = sampled_softmax(u, F.normalize(torch.randn(8, 4), dim=1), torch.arange(8), 10.0)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()
