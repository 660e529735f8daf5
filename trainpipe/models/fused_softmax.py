"""The in-batch sampled softmax's cross-entropy as one autograd function, its products on oneDNN on the CPU.

Why by hand: autograd's composition (addmm, masked_fill, log_softmax, nll_loss) keeps and rewrites several
(batch × candidates) tensors per step: the bias broadcast copied into addmm's output, a log-softmax output,
nll_loss's zero-filled gradient, log_softmax's backward and the mask's backward each a full pass; at the default
batch of 1024 those passes and the three products over the logits were most of a two_tower step (issue 16).
Here the logits are the only such tensor: the forward keeps them as log-probabilities (torch's fused
log_softmax), the backward turns those in place into the softmax (a second backward through the same graph fails
on the version check, as autograd's own in-place ops do), and the one-hot and the per-row weights go on the
(batch × d) sides of the two gradient products instead of on the logits. The other rows' copies of a row's own
item are masked by scattered pairs, or by one comparison when a batch repeats popular items many times. The function is the same cross-entropy, so the loss and gradients are those
of the composition up to float rounding (tests compare them).

The products go through engine/matmul.py's `matmul_nt`: oneDNN's float32 matmul on the CPU, 2.3-2.5x MKL's
sgemm on these shapes here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from trainpipe.engine.matmul import matmul_nt


def same_item_pairs(items: Tensor, codes: Tensor, limit: int | None = None) -> tuple[Tensor, Tensor] | None:
    """(row, column) of every entry whose candidate code equals the row's item, the row's own positive (column = row)
    excepted: what the loss masks; None when there would be more than `limit` (rows' copies included). Found by
    sorting the codes, so no (rows × candidates) comparison is made; a group of g copies gives g² pairs."""
    b = len(items)
    keys = torch.cat([items, codes])  # rows are 0..b-1, candidate columns b..b+c-1
    order = torch.sort(keys, stable=True).indices
    sorted_keys = keys[order]
    starts = torch.ones(len(keys), dtype=torch.bool, device=keys.device)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group = torch.cumsum(starts, 0) - 1
    first = torch.nonzero(starts).flatten()
    size = torch.diff(torch.cat([first, first.new_tensor([len(keys)])]))
    is_row = order < b
    row_pos = torch.nonzero(is_row).flatten()  # sorted positions of the rows
    g = group[row_pos]
    count = size[g]  # every member of the row's group, rows and columns alike
    total = int(count.sum())
    if limit is not None and total > limit:
        return None
    rows = torch.repeat_interleave(order[row_pos], count)
    offset = torch.arange(total, device=keys.device) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    partner = order[torch.repeat_interleave(first[g], count) + offset]
    keep = (partner >= b) & (partner - b != rows)  # columns only, not the row's own positive
    return rows[keep], partner[keep] - b


def mask_same_items(logits: Tensor, items: Tensor, codes: Tensor) -> None:
    """Set logits[i, j] to −inf where candidate j is row i's own item but not its positive (j ≠ i), in place. Few
    repeated items (uniform batches: ~100 pairs at 1024 rows): a scatter of the pairs; many (a popular item hundreds
    of times in a batch: ~90k pairs, measured 2.7 ms against 0.9 ms): one comparison of the whole tensor."""
    b, c = logits.shape
    pairs = same_item_pairs(items, codes, limit=b * c // 64)
    if pairs is not None:
        logits.view(-1).index_fill_(0, pairs[0] * c + pairs[1], float("-inf"))
        return
    rows = torch.arange(b, device=logits.device)
    positive = logits[rows, rows].clone()
    logits.masked_fill_(codes[None, :] == items[:, None], float("-inf"))
    logits[rows, rows] = positive


class InBatchSoftmax(torch.autograd.Function):
    """Mean (or weighted mean) over rows of −log softmax(logits)[i, i], logits = user_side · candidatesᵀ − correction,
    the other rows' copies of a row's own item removed (set to −inf: not negatives)."""

    @staticmethod
    def forward(ctx: Any, user_side: Tensor, candidates: Tensor, correction: Tensor | None,
                items: Tensor, codes: Tensor, weight: Tensor | None) -> Tensor:
        b = user_side.shape[0]
        logits = matmul_nt(user_side, candidates, None if correction is None else -correction)
        mask_same_items(logits, items, codes)
        log_p = torch.log_softmax(logits, dim=1)
        del logits
        rows = torch.arange(b, device=log_p.device)
        if weight is None:
            coef = torch.full((b,), 1.0 / b, device=log_p.device)
        else:
            coef = weight.to(log_p.dtype) / weight.sum().to(log_p.dtype).clamp_min(1e-12)
        ctx.save_for_backward(log_p, user_side, candidates, coef)
        return -(log_p[rows, rows] * coef).sum()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        log_p, user_side, candidates, coef = ctx.saved_tensors
        b = log_p.shape[0]
        softmax = log_p.exp_()  # in place: the log-probabilities are not needed again
        # d loss / d logits = diag(s)·(softmax − one-hot), s = coef · grad: the row scale and the one-hot are applied
        # to the (b × d) sides of the two products, so the (b × candidates) tensor is written once
        scale = (coef * grad)[:, None]
        grad_user = grad_candidates = None
        if ctx.needs_input_grad[0]:
            grad_user = (matmul_nt(softmax, candidates.T) - candidates[:b]) * scale
        if ctx.needs_input_grad[1]:
            scaled = user_side * scale
            grad_candidates = matmul_nt(scaled.T.contiguous(), softmax.T).T  # ((s·U)ᵀ·P)ᵀ = Pᵀ·s·U
            grad_candidates[:b] -= scaled
        return grad_user, grad_candidates, None, None, None, None
