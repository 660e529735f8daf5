"""Exact top-K of one block of users: the seen-item mask, the tie-exact cut, and the prefiltered path.

`block_top_k` takes a full (users × items) float32 score block and `torch.topk`s every row. `dot_block_top_k`
never builds it for dot-product scores (U[users] @ Vᵀ): it ranks by a product in the prefilter's precision first,
bf16 where the CPU multiplies it natively (on a CPU with avx512_bf16 several times faster than the float32 product,
which was over half of the 100k-item top-K: issue 16), else float32, in small user blocks whose scores stay in
cache, where the gain is the selection: chunk maxima and a threshold instead of a `torch.topk` over every column
(on an AVX2-only CPU that top-K took as long as the product, and bf16 products are many times slower than float32
there). It then computes the exact float32 scores only for the items that can still be in some user's top K, and
keeps the k best of those (`top_k_of_pairs`). The result is identical to ranking the full float32 block (tests
hold it to the NumPy reference, ties and seen items included), for this reason:

Error bound. For an item j, let s_j be the float32 score (the block product) and a_j the bf16 score. The inputs
are rounded to bf16, ũ = bf16(u), ṽ = bf16(v), with residuals δu = u − ũ, δv = v − ṽ that are measured (not just
bounded by 2⁻⁸ relative: about half that in norm), so u·v − ũ·ṽ = ũ·δv + δu·ṽ + δu·δv is at most
‖ũ‖‖δv‖ + ‖δu‖‖ṽ‖ + ‖δu‖‖δv‖ (Cauchy-Schwarz). The products of bf16 numbers are exact in float32 and summed in
float32 (torch's CPU bf16 matmul accumulates in float32; relative error γ_d ≤ 1.01·d·2⁻²⁴ of Σ|ũ_i ṽ_i| ≤ ‖ũ‖‖ṽ‖),
denormals flushed (each product off by < 2⁻¹²⁶ × the other factor); that sum t_j is rounded to the bf16 output,
|a_j − t_j| ≤ u·|t_j| ≤ u'·|a_j| with u = 2⁻⁸, u' = u/(1 − u). s_j is off the real product by γ_d·‖u‖‖v_j‖. So
    |a_j − s_j| ≤ E + u'·|a_j|,   E = ‖ũ‖·max‖δv‖ + ‖δu‖·max‖ṽ‖ + ‖δu‖·max‖δv‖ + γ_d·(‖ũ‖·max‖ṽ‖ + ‖u‖·max‖v‖) + denormals,
which `margin` (E, 10 % head room) and `relative` (u', 10 %) over-approximate. (The output rounding is relative
to the score itself, not to ‖u‖·‖v‖: a bound of (2u + ...)·‖u‖·‖v‖ alone does not hold, a one-dimensional pair
reaches 2.75u; tests/unit/evaluation/test_exact_top_k.py has it.) A float32 prefilter is the case ũ = u, ṽ = v,
no output rounding (u' = 0): a_j and s_j are two float32 sums of the same products in different orders, each
within γ_d·‖u‖‖v_j‖ of the real product, so E = 2γ_d·‖u‖·max‖v‖ (+ denormals) bounds |a_j − s_j|.
The threshold: split the row into chunks, take the k-th largest chunk maximum m of the bf16 scores (seen items
at -inf); k distinct chunks hold a bf16 score ≥ m, and a − u'|a| grows with a, so at least k items have
s ≥ F = m − u'|m| − E: the row's k-th float32 score is ≥ F. An item with s ≥ F has a + u'|a| ≥ F − E, and
a + u'|a| grows with a, so a ≥ low = (F − E)/(1 ± u') (+ where F − E ≥ 0): the candidates (a ≥ low) hold every
item that can be in the top K, including every item tied with the k-th. They are found per user in two steps: the
maxima of every FINE items first (an item with a ≥ low lies in a FINE chunk whose maximum is ≥ low; seen items
and the padding after the last item are -inf, never candidates), then the items of the chunks that pass. Each
group of RESCORE_USERS users' candidates (the union of their items) is scored by the same float32 product the full
block uses: `torch.mm` of the group's user rows against those item rows. MKL's sgemm gives an element the same
bits whatever the columns and the other rows are once the product has enough rows (measured here: 4 or more, at
1 and 2 threads; below that it takes other kernels, whose last bit differs), so the product is padded to
EXACT_ROWS rows; tests/unit/evaluation/test_exact_top_k.py checks both properties on the running machine. The top
k of a row are among its candidates with s ≥ F (about k of them), which `top_k_of_pairs` sorts.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp
import torch

SLAB = 8000  # items converted to float32 at a time: 64 users × 8000 × 4 B = 2 MB, one core's L2 (a multiple of
# CHUNK; measured 1.06x a whole-block conversion with 32 users, 8000-20000 alike; 2000-16000 alike with 64)
CHUNK = 100  # items per chunk of the threshold: 100k items -> 1000 chunk maxima, a cheap top-K
FINE = 10  # items per chunk of the candidate test, a divisor of CHUNK and SLAB (measured: 5 and 20 slower)
EXACT_ROWS = 8  # rows of every float32 candidate product (padded): the kernel of large blocks, bit for bit
RESCORE_USERS = 16  # users per float32 candidate product (their candidates' union; 8 alike, 32 slower)
MAX_CANDIDATE_SHARE = 0.25  # candidate scores (FINE per passing chunk) over this share of the block's: the full
# float32 block is cheaper


SeenPairs = tuple[torch.Tensor, torch.Tensor]  # (row, item code) of every seen pair, int64


def seen_pairs(seen: sp.csr_matrix) -> SeenPairs:
    """The (row, item code) pairs of a CSR's stored entries, row-major."""
    rows = torch.from_numpy(np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr)))
    return rows, torch.from_numpy(seen.indices.astype(np.int64))


def mask_seen(scores: torch.Tensor, seen: sp.csr_matrix | SeenPairs | None, codes: torch.Tensor | None = None) -> None:
    """Set each row's seen items to -inf in place (one scatter through the flat positions); `seen` has one row per
    score row (a CSR, or its `seen_pairs`). `codes` (ascending item codes of the columns) when `scores` holds only
    some items' columns. `scores` is contiguous or the transpose of a contiguous tensor (the prefilter's items ×
    users layout)."""
    if seen is None:
        return
    rows, cols = seen if isinstance(seen, tuple) else seen_pairs(seen)
    if len(rows) == 0:
        return
    if codes is not None:
        at = torch.searchsorted(codes, cols).clamp_(max=max(len(codes) - 1, 0))
        present = codes[at] == cols if len(codes) else torch.zeros(len(cols), dtype=torch.bool)
        rows, cols = rows[present], at[present]
    if scores.is_contiguous():
        scores.view(-1).index_fill_(0, rows * scores.shape[1] + cols, float("-inf"))
    elif scores.T.is_contiguous():
        scores.T.view(-1).index_fill_(0, cols * scores.shape[0] + rows, float("-inf"))
    else:
        scores.index_put_((rows, cols), torch.tensor(float("-inf"), dtype=scores.dtype))


def block_top_k(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each row: item codes (-1 for -inf scores) and scores, best first, ties by lower item code.

    `torch.topk` keeps k + 1; a row whose k-th and (k+1)-th scores are equal has a tie at the cut, where which
    of the tied items topk kept is unspecified: those rows (rare with learned scores, common with counts) are
    redone exactly: every item above the k-th score, then the lowest codes among those equal to it. The k kept
    are then ordered by (score descending, code ascending), the order a stable sort of the row gives."""
    n = scores.shape[1]
    kk = min(k, n)
    top = torch.topk(scores, min(kk + 1, n), dim=1)
    values, index = top.values[:, :kk], top.indices[:, :kk]
    if kk < n:
        cut = top.values[:, kk - 1]
        tied = torch.nonzero((cut == top.values[:, kk]) & torch.isfinite(cut)).flatten()
        if len(tied):
            rows, threshold = scores[tied], cut[tied, None]
            above = rows > threshold
            needed = kk - above.sum(dim=1, keepdim=True)
            equal = rows == threshold
            chosen = above | (equal & (torch.cumsum(equal, dim=1) <= needed))
            codes = torch.nonzero(chosen)[:, 1].view(len(tied), kk)  # row-major: kk per row, codes ascending
            index[tied] = codes
            values[tied] = torch.gather(rows, 1, codes)
    values_np, index_np = values.numpy().copy(), index.numpy().astype(np.int64)
    order = np.lexsort((index_np, -values_np), axis=1)  # score descending, then code ascending
    values_np = np.take_along_axis(values_np, order, axis=1)
    index_np = np.take_along_axis(index_np, order, axis=1)
    index_np[~np.isfinite(values_np)] = -1
    return index_np, values_np


def largest_norm(x: torch.Tensor, rows: int = 65536) -> float:
    """The largest row norm, in float64 (no overflow) a bounded number of rows at a time (no float64 copy of a
    million users)."""
    return max((float(torch.linalg.vector_norm(x[i:i + rows].double(), dim=1).max()) for i in range(0, len(x), rows)),
               default=0.0)


class PrefilterItems:
    """The item side of the prefilter, made once per scorer: its item vectors in the product's precision (bf16
    where the CPU multiplies it natively, else float32) and the error bound's factors (module docstring; in
    float32 the residuals are zero and u' = 0).

    `usable` is False where the bound does not hold (non-finite vectors, values bf16 would overflow, or a largest
    ‖u‖·‖v‖ of 2¹²⁶ or more, where a score or a partial sum, at most about ‖u‖·‖v‖, could overflow float32 or
    bf16): the scorer then takes the float32 path."""

    def __init__(self, U: torch.Tensor, V: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> None:
        d = V.shape[1]
        self.dtype = dtype
        finite = bool(torch.isfinite(U).all()) and bool(torch.isfinite(V).all())
        big = max(float(U.abs().max()) if U.numel() else 0.0, float(V.abs().max()) if V.numel() else 0.0)
        norms = [largest_norm(U), largest_norm(V)]
        self.usable = finite and big < 1e30 and norms[0] * norms[1] < 2.0**126 and V.shape[0] > 0
        self.V = V.to(dtype) if self.usable else V[:0].to(dtype)
        u = 2.0**-8 if dtype == torch.bfloat16 else 0.0  # float32: the product's own sum is the output
        self.gamma = 1.01 * d * 2.0**-24  # γ_d: a float32 sum of d products
        self.relative = 1.1 * u / (1 - u)  # u': the float32 sum rounded to the product's bf16 output
        exact = V.double() if self.usable else V[:0].double()
        rounded = self.V.double()
        self.v_norm, self.rounded_norm, self.residual_norm = (
            float(torch.linalg.vector_norm(x, dim=1).max()) if len(x) else 0.0 for x in (exact, rounded, exact - rounded))
        # bf16 products flush denormals (inputs and results): below 2⁻¹²⁶ × the other factor, per product
        self.absolute = d * 2.0**-125 * (float(rounded.abs().max()) if len(rounded) else 0.0) + d * 2.0**-125
        self.d = d

    def margin(self, users: torch.Tensor) -> torch.Tensor:
        """E per user row: ‖ũ‖·max‖δv‖ + ‖δu‖·max‖ṽ‖ + ‖δu‖·max‖δv‖ (the inputs' rounding, ũ = bf16(u), δu = u − ũ,
        measured) + γ_d·(‖ũ‖·max‖ṽ‖ + ‖u‖·max‖v‖) (the two float32 sums) + the flushed denormals, with 10 % head
        room for the float32 arithmetic that uses it (float64 -> float32)."""
        exact = users.double()
        rounded = users.to(self.dtype).double()
        norm, rounded_norm = torch.linalg.vector_norm(exact, dim=1), torch.linalg.vector_norm(rounded, dim=1)
        residual_norm = torch.linalg.vector_norm(exact - rounded, dim=1)
        inputs = (rounded_norm * self.residual_norm + residual_norm * self.rounded_norm
                  + residual_norm * self.residual_norm)
        sums = self.gamma * (rounded_norm * self.rounded_norm + norm * self.v_norm)
        absolute = self.absolute + self.d * 2.0**-125 * rounded.abs().amax(dim=1)
        return (1.1 * (inputs + sums) + absolute).float()

    def thresholds(self, m: torch.Tensor, users: torch.Tensor,
                   margin: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(F, low) per user row from its k-th chunk maximum m (and `margin(users)`, when computed beforehand):
        every top-K float32 score is ≥ F, and every item that can score ≥ F has a bf16 score ≥ low (module
        docstring). float64, then float32 (the head room covers the rounding)."""
        md = m.double()
        margin = (self.margin(users) if margin is None else margin).double()
        floor = md - self.relative * md.abs() - margin
        reach = floor - margin
        low = torch.where(reach >= 0, reach / (1 + self.relative), reach / (1 - self.relative))
        return floor.float(), low.float()


class Workspace:
    """One thread's reused buffers for `dot_block_top_k`: the prefilter's product (items × users, padded with -inf
    rows to a whole number of FINE chunks), one SLAB of it in float32 (bf16 products), and the FINE-chunk maxima.
    A fresh tensor per block costs a page fault per 4 KiB."""

    def __init__(self) -> None:
        self.approx = torch.empty(0)
        self.slab = torch.empty(0)
        self.maxima = torch.empty(0)

    def buffers(self, n: int, b: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scores in `dtype` padded × b, float32 slab SLAB × b, FINE-chunk maxima (padded // FINE) × b), padded =
        n rounded up to a multiple of FINE; the pad rows are -inf."""
        padded = -(-n // FINE) * FINE
        if self.approx.numel() < padded * b or self.approx.dtype != dtype:
            self.approx = torch.empty(padded * b, dtype=dtype)
        if self.slab.numel() < SLAB * b:
            self.slab = torch.empty(SLAB * b)
        if self.maxima.numel() < padded // FINE * b:
            self.maxima = torch.empty(padded // FINE * b)
        approx = self.approx[:padded * b].view(padded, b)
        approx[n:].fill_(float("-inf"))
        return approx, self.slab[:SLAB * b].view(SLAB, b), self.maxima[:padded // FINE * b].view(-1, b)


def dot_block_top_k(U_block: torch.Tensor, V: torch.Tensor, items: PrefilterItems, k: int,
                    seen: sp.csr_matrix | SeenPairs | None, workspace: Workspace | None = None,
                    margin: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact top-k of `U_block @ Vᵀ` (the module docstring's prefilter), or None where the float32 block is the
    cheaper or the only sound way (too few items per chunk, a row with < k chunks of unseen items, too many
    candidates).

    The prefilter's scores are laid out items × users (V·Uᵀ: in bf16 measured 1.3-1.6x faster than U·Vᵀ, and the chunk
    maxima reduce a middle dimension, vectorised over the block's users). They are read once, a SLAB of items at a
    time (bf16: converted to float32 in a cache-sized buffer) for the maxima of every FINE items (torch's bf16 reductions
    are far slower; a whole float32 block was written and re-read from memory by every pass); the CHUNK maxima
    of the threshold are maxima of those. Candidates: the (user, FINE chunk) pairs whose maximum reaches the
    user's `low`, then the (user, item) pairs among their items whose prefilter score does (seen items are -inf there,
    so never candidates): only those pairs are scored in float32 (`exact_pair_scores`) and sorted
    (`top_k_of_pairs`). `margin`: `items.margin(U_block)`, when computed beforehand for all users at once."""
    b, n = U_block.shape[0], V.shape[0]
    kk = min(k, n)
    chunks = n // CHUNK
    if not items.usable or chunks < kk + 1:
        return None
    approx, slab, fine_max = (workspace or Workspace()).buffers(n, b, items.dtype)
    torch.mm(items.V, U_block.to(items.dtype).T, out=approx[:n])
    mask_seen(approx[:n].T, seen)
    for start in range(0, len(approx), SLAB):
        part = approx[start:start + SLAB]
        if part.dtype != torch.float32:  # bf16: converted a cache-sized slab at a time
            part = slab[:len(part)].copy_(part)
        torch.amax(part.view(-1, FINE, b), dim=1, out=fine_max[start // FINE:(start + len(part)) // FINE])
    # the maxima of whole chunks (a tail shorter than CHUNK only adds candidates below); their k-th largest per
    # user by NumPy's partition (introselect) on the chunks × users layout, measured 4x faster than torch.topk
    per = CHUNK // FINE
    chunk_max = torch.amax(fine_max[:chunks * per].view(chunks, per, b), dim=1)
    m = torch.from_numpy(np.partition(chunk_max.numpy(), chunks - kk, axis=0)[chunks - kk])
    if not bool(torch.isfinite(m).all()):
        return None
    floor, low = items.thresholds(m, U_block, margin)
    user, fine = torch.nonzero(fine_max.T >= low[:, None], as_tuple=True)  # user-major, chunks ascending
    if len(fine) * FINE > MAX_CANDIDATE_SHARE * n * b:
        return None
    # candidate pairs: prefilter score >= the user's low (every item that can be in its top K); user-major, items
    # ascending within a user
    pairs = approx.view(-1, FINE, b)[fine, :, user]  # (pairs, FINE)
    pair, offset = torch.nonzero(pairs.float() >= low[user, None], as_tuple=True)
    user, codes = user[pair], fine[pair] * FINE + offset
    return top_k_of_pairs(user, codes, exact_pair_scores(U_block, V, codes, user), floor, kk, b)


def exact_pair_scores(U_block: torch.Tensor, V: torch.Tensor, codes: torch.Tensor,
                      user: torch.Tensor) -> torch.Tensor:
    """The float32 score of each (user row, item code) pair (`user` ascending), bit for bit the full block's: each
    group of RESCORE_USERS users is one `torch.mm` of its rows (padded to EXACT_ROWS) against the union of its
    items (about RESCORE_USERS × 150 on 100k items; the union over all the block's users made it 4x the work)."""
    b = U_block.shape[0]
    values = torch.empty(len(user))
    group_starts = torch.tensor(range(RESCORE_USERS, b, RESCORE_USERS), dtype=torch.int64)
    bounds = [0, *torch.searchsorted(user, group_starts).tolist(), len(user)]
    for group, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        if hi == lo:
            continue
        first = group * RESCORE_USERS
        rows = U_block[first:first + RESCORE_USERS]
        if len(rows) < EXACT_ROWS:
            rows = torch.cat([rows, rows[:1].expand(EXACT_ROWS - len(rows), -1)])
        union, position = torch.unique(codes[lo:hi], sorted=True, return_inverse=True)
        exact = torch.mm(rows, V.index_select(0, union).T)
        values[lo:hi] = exact.view(-1).index_select(0, (user[lo:hi] - first) * len(union) + position)
    return values


def select_top_k(exact: torch.Tensor, floor: torch.Tensor, k: int,
                 codes: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact top-k of each row of `exact` (columns = item `codes`, ascending) among its scores >= the row's `floor`,
    ordered as a stable sort of the row (score descending, then code ascending); None if a row has fewer than k
    such scores (`top_k_of_pairs` of the row's every column)."""
    b, n = exact.shape
    row = torch.arange(b).repeat_interleave(n)
    return top_k_of_pairs(row, codes.repeat(b), exact.flatten(), floor, k, b)


def top_k_of_pairs(row: torch.Tensor, codes: torch.Tensor, values: torch.Tensor, floor: torch.Tensor, k: int,
                   b: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact top-k of each of `b` rows given as (row, item code, float32 score) pairs, rows ascending and codes
    ascending within a row, among the pairs whose score >= the row's `floor`: item codes and scores ordered as a
    stable sort of the row (score descending, then code ascending); None if a row has fewer than k such pairs.
    Every top-K item of a row scores >= its floor (module docstring), so only those (about k per row) are sorted:
    one stable sort of (row, score descending) keys, instead of a top-K over every candidate."""
    keep = values >= floor[row]
    row, codes, values = row[keep], codes[keep], values[keep]
    counts = torch.bincount(row, minlength=b)
    if int(counts.min()) < k:
        return None
    bits = (values + 0.0).view(torch.int32).to(torch.int64)  # + 0.0: -0.0 becomes 0.0, equal as in a sort
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # float order as signed integers
    key = row * 2**32 + (2**31 - 1 - ordered)  # row ascending, then score descending, in [0, 2^32) per row
    order = torch.sort(key, stable=True).indices  # stable: equal scores keep code order
    starts = torch.cumsum(counts, 0) - counts
    chosen = order[(starts[:, None] + torch.arange(k)).flatten()]
    return codes[chosen].view(b, k).numpy(), values[chosen].view(b, k).numpy().copy()
