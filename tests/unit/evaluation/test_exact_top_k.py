"""The prefiltered top-K (evaluation/exact_top_k.py), in bf16 and in float32, is exact: identical items and scores
to the NumPy reference's stable sort of the full float32 rows, ties at the cut and seen items included; its error
bound holds; and the float32 product it relies on gives the same bits for a subset of columns as for the full
block. bf16 products run emulated on a CPU without native bf16: slower, the same numbers."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from trainpipe.evaluation import exact_top_k
from trainpipe.evaluation.exact_top_k import CHUNK, EXACT_ROWS, PrefilterItems, dot_block_top_k, select_top_k
from trainpipe.evaluation.ranking_metrics import DotScorer, top_k
from trainpipe.evaluation.ranking_reference import reference_top_k


def seen_matrix(n_users: int, n_items: int, density: float, seed: int) -> sp.csr_matrix:
    seen = sp.random(n_users, n_items, density=density, random_state=seed, format="csr")
    seen.data[:] = 1
    return seen


PRECISIONS = [torch.bfloat16, torch.float32]


@pytest.mark.parametrize("dtype", PRECISIONS)
@pytest.mark.parametrize("kind, k", [("tied", 5), ("tied", 12), ("normal", 10), ("skewed", 7)])
def test_prefiltered_top_k_equals_the_numpy_reference(kind, k, dtype, monkeypatch):
    monkeypatch.setattr(exact_top_k, "MAX_CANDIDATE_SHARE", 1.0)  # answer even where ties make it no cheaper
    rng = np.random.default_rng(k)
    n_users, n_items = 70, CHUNK * 14 + 37  # a tail shorter than one chunk
    if kind == "tied":  # small integers: exact scores, ties everywhere, also at the cut
        U = torch.from_numpy(rng.integers(-2, 3, (n_users, 4)).astype(np.float32))
        V = torch.from_numpy(rng.integers(-2, 3, (n_items, 4)).astype(np.float32))
    else:
        U = torch.from_numpy(rng.standard_normal((n_users, 16)).astype(np.float32))
        V = torch.from_numpy(rng.standard_normal((n_items, 16)).astype(np.float32))
        if kind == "skewed":  # item norms over three orders of magnitude (popularity-like)
            V *= torch.from_numpy(10 ** rng.uniform(-2, 1, (n_items, 1)).astype(np.float32))
    exclude = seen_matrix(n_users, n_items, 0.2, seed=k)
    users = rng.permutation(n_users)[:50]
    scorer = DotScorer(U, V, prefilter_dtype=dtype)
    want = reference_top_k(scorer, users, k, exclude)
    got, got_scores = top_k(scorer, users, k, exclude, batch_users=16, prefilter=True)
    assert np.array_equal(got, want)
    full = scorer(users).numpy()
    assert np.array_equal(got_scores, np.take_along_axis(full, got, axis=1))  # the float32 scores, bit for bit
    # the prefilter itself answered (it did not hand the blocks to the float32 path)
    block = torch.from_numpy(users[:16])
    assert dot_block_top_k(scorer.U[block], scorer.V, scorer.prefilter_items(), k, exclude[users[:16]]) is not None


@pytest.mark.parametrize("dtype", PRECISIONS)
def test_prefilter_declines_what_it_cannot_prove_cheaper_or_sound(dtype):
    rng = np.random.default_rng(0)
    U = torch.from_numpy(rng.standard_normal((4, 8)).astype(np.float32))
    V = torch.from_numpy(rng.standard_normal((CHUNK * 20, 8)).astype(np.float32))
    items = PrefilterItems(U, V, dtype)
    assert dot_block_top_k(U, V, items, 25, None) is None  # fewer chunks than k + 1
    everything_seen = sp.csr_matrix(np.ones((4, len(V)), dtype=np.float32))
    assert dot_block_top_k(U, V, items, 5, everything_seen) is None  # no k chunks with an unseen item
    V_nan = V.clone()
    V_nan[3, 0] = float("nan")
    assert not PrefilterItems(U, V_nan, dtype).usable


@pytest.mark.parametrize("scale_u, scale_v, d", [(1.0, 1.0, 64), (1e3, 1e-3, 16), (1e-4, 1e5, 128)])
def test_float32_prefilter_margin_covers_a_product_summed_in_another_order(scale_u, scale_v, d):
    """The float32 prefilter's items × users product may sum a score's products in another order than the full
    block: every order stays within its margin (here the dimensions reversed, and the transposed layout)."""
    rng = np.random.default_rng(d)
    U = torch.from_numpy((rng.standard_normal((64, d)) * scale_u).astype(np.float32))
    V = torch.from_numpy((rng.standard_normal((5000, d)) * scale_v * rng.uniform(0, 2, (5000, 1))).astype(np.float32))
    items = PrefilterItems(U, V, torch.float32)
    assert items.relative == 0.0
    exact = torch.mm(U, V.T)
    for approx in (torch.mm(U.flip(1), V.flip(1).T), torch.mm(V, U.T).T):
        assert ((approx - exact).abs() <= items.margin(U)[:, None]).all()
    assert (torch.mm(U.flip(1), V.flip(1).T) != exact).any()  # the orders differ: the bound is exercised


@pytest.mark.parametrize("scale_u, scale_v, d", [(1.0, 1.0, 64), (1e3, 1e-3, 16), (1e-4, 1e5, 128)])
def test_bf16_scores_stay_within_the_proven_margin(scale_u, scale_v, d):
    rng = np.random.default_rng(d)
    U = torch.from_numpy((rng.standard_normal((64, d)) * scale_u).astype(np.float32))
    V = torch.from_numpy((rng.standard_normal((5000, d)) * scale_v * rng.uniform(0, 2, (5000, 1))).astype(np.float32))
    items = PrefilterItems(U, V)
    approx = torch.mm(U.bfloat16(), items.V.T).float()
    exact = torch.mm(U, V.T)
    error = approx - exact
    assert (error.abs() <= items.margin(U)[:, None] + items.relative * approx.abs()).all()
    assert (error != 0).any()  # the bound is exercised, not vacuous


def test_bound_covers_the_bf16_output_rounding_of_a_worst_case_pair():
    """Inputs that round down by almost u each and a product that rounds down again: the bf16 score is 2.75u·|s|
    below the float32 one, more than a bound of (2u + u²)·‖u‖·‖v‖ allows; the output term u'·|a| covers it."""
    x = 1.0664024353027344  # 1.0625 + 2⁻⁸(1 − 2⁻¹⁰): rounds down to bf16 1.0625, whose square rounds to 1.125
    U, V = torch.tensor([[x]]), torch.tensor([[x]])
    items = PrefilterItems(U, V)
    approx = torch.mm(U.bfloat16(), items.V.T).float()
    error = float((U @ V.T - approx).abs())
    assert error > float(items.margin(U))
    assert error <= float(items.margin(U) + items.relative * approx.abs())
    floor, low = items.thresholds(approx.flatten(), U)  # m = the item's own bf16 score
    assert float(floor) <= float(U @ V.T) and float(low) <= float(approx)


@pytest.mark.parametrize("d", [2, 16, 64])
def test_bound_holds_where_every_rounding_error_has_the_same_sign(d):
    """Every coordinate just below a rounding midpoint (all residuals aligned, the bound's Cauchy-Schwarz step
    tight), next to items that round up or not at all."""
    x = 1.0664024353027344
    U = torch.full((3, d), x) * torch.tensor([[1.0], [-1.0], [0.5]])
    V = torch.cat([torch.full((1, d), x), torch.full((1, d), 1.0625), torch.full((1, d), 1.0703125 + 1e-4)])
    items = PrefilterItems(U, V)
    approx = torch.mm(U.bfloat16(), items.V.T).float()
    error = (U @ V.T - approx).abs()
    assert (error <= items.margin(U)[:, None] + items.relative * approx.abs()).all()
    assert (error > 0).any()


def test_select_top_k_orders_like_a_stable_sort_with_ties_signed_zeros_and_seen_items():
    rng = np.random.default_rng(3)
    exact = torch.from_numpy(rng.integers(-3, 4, (6, 40)).astype(np.float32))
    exact[0, :5] = -0.0
    exact[0, 5:10] = 0.0  # -0.0 and 0.0 are equal scores: lower code first, as the stable sort orders them
    exact[0, 10:] = -1.0
    exact[0, 10:13] = 2.0  # row 0's top 12: three 2s, then nine of the ten zeros (the cut among the zeros)
    exact[1, ::3] = float("-inf")  # seen
    codes = torch.from_numpy(np.sort(rng.choice(1000, 40, replace=False)))
    k = 12
    full = exact.numpy()
    order = np.argsort(-full, axis=1, kind="stable")[:, :k]
    floor = torch.from_numpy(np.take_along_axis(full, order, axis=1)[:, -1])  # the k-th score itself
    got_codes, got_values = select_top_k(exact, floor, k, codes)
    assert np.array_equal(got_codes, codes.numpy()[order])
    assert np.array_equal(got_values, np.take_along_axis(full, order, axis=1))
    assert select_top_k(exact, floor + 10, k, codes) is None  # fewer than k scores reach the floor


def test_float32_product_of_exact_rows_gives_the_bits_of_a_large_block():
    """What the prefilter's rescoring relies on: a product with EXACT_ROWS rows (or more) computes each element as
    the large blocks of the float32 path and of the reference do, whatever the columns and the other rows."""
    rng = np.random.default_rng(5)
    for n, d in [(20_000, 64), (3000, 17), (5000, 128)]:
        U = torch.from_numpy(rng.standard_normal((300, d)).astype(np.float32))
        V = torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32))
        full = torch.mm(U, V.T)
        columns = torch.from_numpy(np.sort(rng.choice(n, n // 9, replace=False)))
        for rows in (torch.arange(EXACT_ROWS), torch.from_numpy(rng.choice(300, 45, replace=False))):
            assert torch.equal(torch.mm(U[rows], V.index_select(0, columns).T), full[rows][:, columns])


@pytest.mark.parametrize("dtype", PRECISIONS)
def test_blocks_ranked_on_worker_threads_equal_one_thread_and_restore_torch_threads(dtype, monkeypatch):
    monkeypatch.setattr(exact_top_k, "MAX_CANDIDATE_SHARE", 1.0)
    rng = np.random.default_rng(9)
    U = torch.from_numpy(rng.standard_normal((130, 8)).astype(np.float32))
    V = torch.from_numpy(rng.standard_normal((CHUNK * 12, 8)).astype(np.float32))
    exclude = seen_matrix(130, len(V), 0.1, seed=9)
    users = rng.permutation(130)
    previous = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 3):  # 130 users: 5 blocks, on 1 or 3 workers
            torch.set_num_threads(threads)
            results.append(top_k(DotScorer(U, V, prefilter_dtype=dtype), users, 9, exclude, prefilter=True))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(previous)
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])
    assert np.array_equal(results[0][0], reference_top_k(DotScorer(U, V), users, 9, exclude))


@pytest.mark.parametrize("dtype", PRECISIONS)
def test_top_k_hidden_from_bf16_among_near_duplicates_in_the_padded_tail(dtype, monkeypatch):
    """Adversarial for the candidate step: 120 items whose vectors differ only below bf16's resolution (identical
    bf16 scores, distinct float32 ones), spread over many 10-item chunks and the catalogue's last, partial one,
    plus exact ties: the float32 top K among them must still be found, in the reference's order (and in float32,
    among scores a few ulps apart)."""
    monkeypatch.setattr(exact_top_k, "MAX_CANDIDATE_SHARE", 1.0)
    rng = np.random.default_rng(11)
    n_users, n_items, d, k = 40, CHUNK * 40 + 7, 8, 25
    base = torch.from_numpy(rng.standard_normal(d).astype(np.float32)).bfloat16().float().numpy()  # a bf16 vector
    V = 0.2 * rng.standard_normal((n_items, d)).astype(np.float32)
    twins = np.concatenate([rng.choice(n_items - 7, 113, replace=False), np.arange(n_items - 7, n_items)])
    # factors within half a bf16 ulp of 1 (so every twin rounds to `base`), repeated: ties among the twins
    V[twins] = base * (1 + rng.integers(0, 31, (len(twins), 1)) * 2.0**-14).astype(np.float32)
    U = (base + 0.01 * rng.standard_normal((n_users, d))).astype(np.float32)
    scorer = DotScorer(torch.from_numpy(U), torch.from_numpy(V), prefilter_dtype=dtype)
    if dtype == torch.bfloat16:
        assert (scorer.prefilter_items().V[twins] == scorer.prefilter_items().V[twins[0]]).all()  # one bf16 vector
    exclude = seen_matrix(n_users, n_items, 0.05, seed=11)
    users = np.arange(n_users)
    want = reference_top_k(scorer, users, k, exclude)
    got, _ = top_k(scorer, users, k, exclude, prefilter=True)
    assert np.array_equal(got, want)
    assert np.isin(want[:, :10], twins).all()  # the top of every row is made of twins: the test is not vacuous
    assert dot_block_top_k(scorer.U, scorer.V, scorer.prefilter_items(), k, exclude) is not None


def test_pair_scores_have_the_bits_of_the_full_block_for_whole_and_partial_user_groups():
    rng = np.random.default_rng(12)
    b, n, d = 2 * exact_top_k.RESCORE_USERS + 3, 4000, 64  # two whole groups and one of 3 users (padded rows)
    U = torch.from_numpy(rng.standard_normal((b, d)).astype(np.float32))
    V = torch.from_numpy(rng.standard_normal((n, d)).astype(np.float32))
    per_user = [np.sort(rng.choice(n, 150, replace=False)) for _ in range(b)]
    user = torch.from_numpy(np.repeat(np.arange(b), 150))
    codes = torch.from_numpy(np.concatenate(per_user))
    values = exact_top_k.exact_pair_scores(U, V, codes, user)
    assert torch.equal(values, torch.mm(U, V.T)[user, codes])


@pytest.mark.parametrize("dtype", PRECISIONS)
def test_seen_pairs_mask_as_the_csr_does(dtype):
    rng = np.random.default_rng(13)
    U = torch.from_numpy(rng.standard_normal((20, 8)).astype(np.float32))
    V = torch.from_numpy(rng.standard_normal((CHUNK * 12, 8)).astype(np.float32))
    seen = seen_matrix(20, len(V), 0.3, seed=13)
    items = PrefilterItems(U, V, dtype)
    from_csr = dot_block_top_k(U, V, items, 10, seen)
    from_pairs = dot_block_top_k(U, V, items, 10, exact_top_k.seen_pairs(seen))
    assert from_csr is not None and from_pairs is not None
    assert np.array_equal(from_csr[0], from_pairs[0]) and np.array_equal(from_csr[1], from_pairs[1])
    assert not np.isin(from_csr[0], seen.indices[seen.indptr[0]:seen.indptr[1]]).any(axis=1)[0]


def test_vectors_whose_scores_could_overflow_take_the_float32_path():
    U = torch.full((2, 4), 2.0**62)
    V = torch.full((CHUNK * 2, 4), 2.0**63)  # every value fits bf16; ‖u‖·‖v‖ = 2¹²⁷ does not fit the bound
    assert not PrefilterItems(U, V).usable
    assert PrefilterItems(U / 4, V).usable


def test_scorer_prefilters_in_bf16_only_where_the_cpu_multiplies_it_natively(monkeypatch):
    from trainpipe.evaluation import ranking_metrics

    U, V = torch.ones((2, 4)), torch.ones((CHUNK * 2, 4))
    for native, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(ranking_metrics, "bf16_is_native", lambda native=native: native)
        assert DotScorer(U, V).prefilter_items().dtype == dtype
        assert DotScorer(U, V).prefilter_items().V.dtype == dtype
    assert DotScorer(U, V, prefilter_dtype=torch.bfloat16).prefilter_items().dtype == torch.bfloat16
