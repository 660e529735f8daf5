"""Retrieval losses over a batch of (user, positive item) pairs, the other rows' items as negatives.

All three take L2-normalised user vectors `u` (b, d), positive item vectors `v` (b, d), the item
codes of the batch (to mask an item that is some other row's positive too: not a true negative),
optional extra negatives `v_neg` (m, d) shared by the batch, and per-row weights.

- softmax: in-batch sampled softmax. Popular items appear as in-batch negatives more often than
  uniform sampling would have them, which biases the model against them; the log-Q correction
  (Yi et al., RecSys 2019) subtracts log(sampling probability) from every logit to undo it.
- bpr: -log σ(s_pos - s_neg), averaged over the row's negatives.
- triplet: max(0, margin - cos_pos + cos_neg), averaged over the row's negatives.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from trainpipe.models.fused_softmax import InBatchSoftmax


def _logits(u: Tensor, v: Tensor, items: Tensor, v_neg: Tensor | None,
            neg_items: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Similarities (b, b [+ m]) and a mask of the entries that are valid negatives."""
    b = len(items)
    sims = u @ v.T
    valid = items[None, :] != items[:, None]  # also removes the diagonal (the positive itself)
    if v_neg is not None:
        assert neg_items is not None, "extra negatives come with their item codes"
        sims = torch.cat([sims, u @ v_neg.T], dim=1)
        valid = torch.cat([valid, neg_items[None, :] != items[:, None]], dim=1)
    return sims, valid, torch.arange(b, device=u.device)


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1e-12)


def sampled_softmax(u: Tensor, v: Tensor, items: Tensor, scale: Any, weight: Tensor | None = None,
                    log_q: Tensor | None = None, v_neg: Tensor | None = None, neg_items: Tensor | None = None,
                    neg_log_q: Tensor | None = None) -> Tensor:
    """Cross-entropy of the positive against in-batch (and extra) negatives; `log_q` per batch item.

    The scale goes on the (b, d) user side, the log-Q correction is the product's bias, and the other rows' copies
    of a row's own positive are masked: one (b × candidates) tensor, kept by `InBatchSoftmax` (models/fused_softmax.py,
    issue 16: the composed ops' passes over it were most of a training step). Under autocast the composed ops run
    instead, so the products take autocast's dtype as before."""
    b = len(items)
    candidates, codes, correction = v, items, log_q
    if v_neg is not None:
        assert neg_items is not None, "extra negatives come with their item codes"
        candidates, codes = torch.cat([v, v_neg]), torch.cat([items, neg_items])
        if log_q is not None:
            assert neg_log_q is not None, "extra negatives come with their sampling probabilities"
            correction = torch.cat([log_q, neg_log_q])
    user_side = u.float() * scale
    if not torch.is_autocast_enabled(u.device.type):  # the other rows' copies of a row's own positive: masked
        return InBatchSoftmax.apply(user_side, candidates.float(), None if correction is None else correction.float(),
                                    items, codes, weight)
    target = torch.arange(b, device=u.device)
    duplicate = codes[None, :] == items[:, None]  # another row's positive that is this row's positive too
    duplicate[target, target] = False  # keep the positive's own logit
    if correction is None:
        logits = user_side @ candidates.float().T
    else:
        logits = torch.addmm(-correction.float()[None, :], user_side, candidates.float().T)
    logits = logits.float().masked_fill_(duplicate, float("-inf"))
    return _weighted_mean(F.cross_entropy(logits, target, reduction="none"), weight)


def bpr(u: Tensor, v: Tensor, items: Tensor, scale: Any, weight: Tensor | None = None, v_neg: Tensor | None = None,
        neg_items: Tensor | None = None, **_: Any) -> Tensor:
    sims, valid, target = _logits(u, v, items, v_neg, neg_items)
    sims = sims.float() * scale
    positive = sims[target, target][:, None]
    pairs = -F.logsigmoid(positive - sims) * valid
    per_row = pairs.sum(dim=1) / valid.sum(dim=1).clamp_min(1)
    return _weighted_mean(per_row, weight)


def triplet(u: Tensor, v: Tensor, items: Tensor, scale: Any, weight: Tensor | None = None, v_neg: Tensor | None = None,
            neg_items: Tensor | None = None, margin: float = 0.2, **_: Any) -> Tensor:
    sims, valid, target = _logits(u, v, items, v_neg, neg_items)
    sims = sims.float()
    positive = sims[target, target][:, None]
    pairs = torch.relu(margin - positive + sims) * valid
    per_row = pairs.sum(dim=1) / valid.sum(dim=1).clamp_min(1)
    return _weighted_mean(per_row, weight)


LOSSES = {"softmax": sampled_softmax, "bpr": bpr, "triplet": triplet}
