"""The ranking metrics written the plain way: the definition that evaluation/ranking_metrics.py must equal.

Each user's full score row (NumPy), seen items set to -inf from a dense row, a stable sort of the row (score
descending, ties by lower item code), the first K; then Recall/NDCG/HitRate@K and MRR per user by their
textbook definitions, one user at a time. Slow on purpose: obviously correct, it is the oracle the fast
streamed top-K is tested against (tests/unit/evaluation/test_ranking_metrics.py) and the baseline
benchmarks/bench_ranking.py times it against.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from trainpipe.evaluation.ranking_metrics import ScoreFn


def reference_top_k(score_fn: ScoreFn, users: np.ndarray, k: int, exclude: sp.csr_matrix | None = None,
                    batch_users: int = 256) -> np.ndarray:
    """Top-k item codes per user (-1 where fewer than k unseen items exist)."""
    out = np.full((len(users), k), -1, dtype=np.int64)
    for start in range(0, len(users), batch_users):
        batch = users[start:start + batch_users]
        scores = np.asarray(score_fn(batch), dtype=np.float32).copy()
        if exclude is not None:
            scores[exclude[batch].toarray() > 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        ranked = np.take_along_axis(scores, order, axis=1)
        order[~np.isfinite(ranked)] = -1
        out[start:start + len(batch), :order.shape[1]] = order
    return out


def reference_per_user(top: np.ndarray, relevant: sp.csr_matrix, ks: list[int]) -> dict[str, np.ndarray]:
    """Per row of `top` (rows of `relevant` aligned, each with at least one relevant item)."""
    out: dict[str, list[float]] = {f"{m}_at_{k}": [] for k in ks for m in ("recall", "hit_rate", "ndcg")}
    out["mrr"] = []
    for row, items in enumerate(top):
        wanted = set(relevant.indices[relevant.indptr[row]:relevant.indptr[row + 1]].tolist())
        hits = [int(item) in wanted for item in items]
        for k in ks:
            found = sum(hits[:k])
            out[f"recall_at_{k}"].append(found / len(wanted))
            out[f"hit_rate_at_{k}"].append(float(found > 0))
            dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits[:k]) if hit)
            ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(wanted), k)))
            out[f"ndcg_at_{k}"].append(dcg / ideal)
        first = next((rank for rank, hit in enumerate(hits) if hit), None)
        out["mrr"].append(0.0 if first is None else 1 / (first + 1))
    return {name: np.asarray(values) for name, values in out.items()}
