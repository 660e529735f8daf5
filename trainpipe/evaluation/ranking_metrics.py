"""Exact top-K ranking metrics over the whole catalogue, streamed in batches of users.

A block of users is scored against every item with one matrix product (into one reused buffer), the
items each user saw before are set to -inf through the CSR's flat positions, and `torch.topk` keeps K
per user, ties at the cut resolved exactly (lower item code first): memory is block × items, never
users × items. Dot-product scorers over a large catalogue go through an exact prefilter instead
(evaluation/exact_top_k.py: small user blocks, chunk maxima, a proven error bound, then float32 scores of the
candidates only; in bf16 where the CPU multiplies it natively, else in float32). Hits are found
by binary search of (row, item) keys in the sorted relevant set, so no step loops over users in Python.
evaluation/ranking_reference.py is the same definition written the plain way (a stable sort of each user's
full row); tests hold the two to identical results.

Definitions (per user with at least one relevant item, then averaged over those users):
Recall@K = relevant items in the top K / relevant items; HitRate@K = 1 if any is; NDCG@K = DCG of
the top K / DCG of a perfect top K (binary gains, log2 discount); MRR = 1 / rank of the first
relevant item within the largest K (0 if none). Catalogue-level: coverage@K = distinct items
recommended in anyone's top K / items; popularity_bias@K = mean training popularity of recommended
items / mean training popularity of all items (1: no bias toward popular items).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
import torch

from trainpipe.engine.precision import bf16_is_native
from trainpipe.evaluation.exact_top_k import (
    CHUNK,
    PrefilterItems,
    Workspace,
    block_top_k,
    dot_block_top_k,
    mask_seen,
    seen_pairs,
)

PREFILTER_MIN_ITEMS = 10_000  # smaller catalogues: the float32 blocks are about as fast or faster (prefilter_pays)
FLOAT32_PREFILTER_MIN_ITEMS = 50_000  # the same without native bf16, where the prefilter's product is float32
# users per prefilter block: 64 × 100k bf16 scores = 12.8 MB; measured 1.19-1.25x the users/s of 32-user blocks
# at 100k items (1 and 2 threads: the per-block operations weigh half as much per user); 48 slower, 96 and 128 no
# better; in float32 (25.6 MB) 1.13x 32-user blocks and 1.14x 128-user blocks (2 threads, AVX2-only CPU)
PREFILTER_USERS = 64
ScoreFn = Callable[[np.ndarray], torch.Tensor]  # user codes (b,) -> float32 scores (b, n_items)


class DotScorer:
    """Scores that are a product of user and item vectors, `U[users] @ Vᵀ` (the model, PureSVD, most-popular as
    a rank-1 product): `top_k` has it write each block into one reused buffer. A fresh (users × items) tensor per
    block costs a page fault per 4 KiB of it (a 256 × 100k block is 100 MB), which the top-K itself does not.
    On a large catalogue `top_k` ranks through the exact prefilter instead (evaluation/exact_top_k.py), with the
    same result; `prefilter_dtype` is its product's precision (None: bf16 where the CPU multiplies it natively,
    else float32; tests set it to check both on any CPU)."""

    def __init__(self, U: torch.Tensor, V: torch.Tensor, prefilter_dtype: torch.dtype | None = None) -> None:
        self.U, self.V = U.float().contiguous(), V.float().contiguous()
        self.prefilter_dtype = prefilter_dtype
        self._prefilter_items: PrefilterItems | None = None

    def __call__(self, users: np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.mm(self.U[torch.from_numpy(np.asarray(users, dtype=np.int64))], self.V.T, out=out)

    def prefilter_precision(self) -> torch.dtype:
        return self.prefilter_dtype or (torch.bfloat16 if bf16_is_native() else torch.float32)

    def prefilter_items(self) -> PrefilterItems:
        if self._prefilter_items is None:
            self._prefilter_items = PrefilterItems(self.U, self.V, self.prefilter_precision())
        return self._prefilter_items


def interaction_matrix(user: np.ndarray, item: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary users × items CSR (repeated pairs count once), indices sorted within rows."""
    m = sp.csr_matrix((np.ones(len(user), dtype=np.float32), (user, item)), shape=(n_users, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    m.sort_indices()
    return m


def top_k(score_fn: ScoreFn, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None,
          batch_users: int = 1024, prefilter: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item codes (-1 where fewer than k unseen items exist) and scores, per user, best first (ties: lower
    item code first).

    Blocks of `batch_users` users: scores (a reused buffer for a `DotScorer`), the block's seen items masked,
    `block_top_k`. A `DotScorer` goes through the exact prefilter instead where `prefilter` is True, or None
    and `prefilter_pays` (`prefiltered_top_k`). `exclude` is indexed by user code (rows = all users)."""
    if isinstance(score_fn, DotScorer) and (prefilter_pays(len(score_fn.V), k, score_fn.prefilter_precision())
                                            if prefilter is None else prefilter):
        return prefiltered_top_k(score_fn, users, k, exclude)
    n = len(users)
    items = np.full((n, k), -1, dtype=np.int64)
    scores_out = np.full((n, k), -np.inf, dtype=np.float32)
    buffer: torch.Tensor | None = None
    for start in range(0, n, batch_users):
        batch = users[start:start + batch_users]
        if isinstance(score_fn, DotScorer):
            if buffer is None:
                buffer = torch.empty((min(batch_users, n), score_fn.V.shape[0]), dtype=torch.float32)
            scores = score_fn(batch, out=buffer[:len(batch)])
        else:
            scores = score_fn(batch).float().contiguous()
        mask_seen(scores, exclude[batch] if exclude is not None else None)
        index, values = block_top_k(scores, k)
        items[start:start + len(batch), :index.shape[1]] = index
        scores_out[start:start + len(batch), :index.shape[1]] = values
    return items, scores_out


def prefilter_pays(n_items: int, k: int, precision: torch.dtype) -> bool:
    """A catalogue large enough for the prefilter's `precision` and at least 2·k chunks (the k-th largest of fewer
    chunk maxima is a loose threshold). bf16 (native): PREFILTER_MIN_ITEMS or more, measured 2.8x the float32
    blocks at 100k and 50k items (K = 100), 1.7x at 20k (K = 100) and 10k (K = 50), 2.0x at 10k (K = 20), 1.1x at
    5k (K = 20), 0.64x at 2k (K = 10) (CPU time, one thread, unit vectors in 64 dims; the candidate product and the
    per-block operations weigh more against a smaller float32 product). float32 (an AVX2-only AMD EPYC, 2 threads,
    2,048 users): FLOAT32_PREFILTER_MIN_ITEMS or more, measured 1.40x at 100k items (1.72x on one thread) and 1.24x
    at 50k (K = 100), 0.94x at 20k (K = 100), 0.69x at 10k (K = 50): the float32 product is most of its time, and
    only the selection after it is saved."""
    least = PREFILTER_MIN_ITEMS if precision == torch.bfloat16 else FLOAT32_PREFILTER_MIN_ITEMS
    return n_items >= max(least, 2 * CHUNK * k)


def prefiltered_top_k(scorer: DotScorer, users: np.ndarray, k: int,
                      exclude: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` of a `DotScorer` through `dot_block_top_k`, PREFILTER_USERS users per block (their scores stay
    in the shared L3 cache), one block per torch thread at a time, each block's operations single-threaded: a
    block is a few dozen small operations, and with torch's threads inside each one, a busy machine made every
    operation wait for a descheduled thread (measured 10x slower on 2 shared cores). Blocks are independent and
    written to their own rows, so the result does not depend on the scheduling. A block the prefilter declines
    is ranked from its full float32 scores. The users' seen items are selected once (one CSR row selection per
    block cost more than the block's masking)."""
    n = len(users)
    items = np.full((n, k), -1, dtype=np.int64)
    scores_out = np.full((n, k), -np.inf, dtype=np.float32)
    item_side = scorer.prefilter_items()
    user_rows = torch.from_numpy(np.asarray(users, dtype=np.int64))
    margins = item_side.margin(scorer.U.index_select(0, user_rows)) if item_side.usable else None  # once, not per block
    # every user's seen pairs at once (a CSR row selection per block cost more than its block's masking)
    seen_all = exclude[np.asarray(users, dtype=np.int64)] if exclude is not None else sp.csr_matrix((n, 1))
    seen_rows, seen_cols = seen_pairs(seen_all)
    local = threading.local()  # each worker thread's reused buffers

    def rank(start: int) -> None:
        batch = np.asarray(users[start:start + PREFILTER_USERS], dtype=np.int64)
        lo, hi = int(seen_all.indptr[start]), int(seen_all.indptr[start + len(batch)])
        seen = (seen_rows[lo:hi] - start, seen_cols[lo:hi])
        if not hasattr(local, "workspace"):
            local.workspace = Workspace()
        found = dot_block_top_k(scorer.U.index_select(0, torch.from_numpy(batch)), scorer.V, item_side, k, seen,
                                local.workspace, None if margins is None else margins[start:start + len(batch)])
        if found is None:
            scores = scorer(batch)
            mask_seen(scores, seen)
            found = block_top_k(scores, k)
        index, values = found
        items[start:start + len(batch), :index.shape[1]] = index
        scores_out[start:start + len(batch), :index.shape[1]] = values

    workers = torch.get_num_threads()
    starts = range(0, n, PREFILTER_USERS)
    if workers == 1 or len(starts) == 1:
        for start in starts:
            rank(start)
        return items, scores_out
    torch.set_num_threads(1)  # read by each worker thread at its first operation
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(rank, starts))  # list: re-raises a worker's exception here
    finally:
        torch.set_num_threads(workers)
    return items, scores_out


def hit_matrix(top: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """hits[r, j]: is top[r, j] among row r's relevant items (rows of `relevant` align with `top`)."""
    n_items = relevant.shape[1]
    if not relevant.has_sorted_indices:
        relevant = relevant.sorted_indices()
    rows = np.repeat(np.arange(relevant.shape[0], dtype=np.int64), np.diff(relevant.indptr))
    rel_keys = rows * n_items + relevant.indices  # sorted: rows ascending, indices sorted within rows
    keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_items + top
    pos = np.minimum(np.searchsorted(rel_keys, keys), max(len(rel_keys) - 1, 0))
    return (top >= 0) & (rel_keys[pos] == keys) if len(rel_keys) else np.zeros(top.shape, dtype=bool)


def per_user_metrics(top: np.ndarray, relevant: sp.csr_matrix, ks: list[int]) -> dict[str, np.ndarray]:
    """Recall/NDCG/HitRate@K and MRR per row (rows with no relevant item must be removed beforehand)."""
    hits = hit_matrix(top, relevant)
    n_rel = np.diff(relevant.indptr).astype(np.float64)
    discount = 1.0 / np.log2(np.arange(top.shape[1]) + 2.0)
    ideal = np.cumsum(discount)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = hits[:, :k]
        found = h.sum(axis=1)
        out[f"recall_at_{k}"] = found / n_rel
        out[f"hit_rate_at_{k}"] = (found > 0).astype(np.float64)
        dcg = (h * discount[:k]).sum(axis=1)
        out[f"ndcg_at_{k}"] = dcg / ideal[np.minimum(n_rel, k).astype(np.int64) - 1]
    first = hits.argmax(axis=1)
    out["mrr"] = np.where(hits.any(axis=1), 1.0 / (first + 1.0), 0.0)
    return out


def catalogue_metrics(top: np.ndarray, ks: list[int], popularity: np.ndarray) -> dict[str, float]:
    n_items = len(popularity)
    mean_pop = float(popularity.mean()) or 1.0
    out = {}
    for k in ks:
        chosen = top[:, :k]
        chosen = chosen[chosen >= 0]
        out[f"coverage_at_{k}"] = float(len(np.unique(chosen)) / n_items)
        out[f"popularity_bias_at_{k}"] = float(popularity[chosen].mean() / mean_pop) if len(chosen) else 0.0
    return out


def evaluate(score_fn: ScoreFn, relevant: sp.csr_matrix, exclude: sp.csr_matrix, ks: list[int],
             popularity: np.ndarray, batch_users: int = 1024,
             users: np.ndarray | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics of one scorer for the users with relevant items (or the given subset of them).

    `relevant` and `exclude` are users × items (all users); returns the averages and per-user values."""
    if users is None:
        users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    top, _ = top_k(score_fn, users, max(ks), exclude, batch_users)
    per_user = per_user_metrics(top, relevant[users], ks)
    summary = {name: float(values.mean()) if len(values) else 0.0 for name, values in per_user.items()}
    summary.update(catalogue_metrics(top, ks, popularity))
    summary["users"] = float(len(users))
    return summary, per_user
