"""The recommender a packaged ranking model serves: ids in, top-K item ids with scores out.

It holds the item vectors and ids, the known users' vectors, each known user's seen items (CSR), the
item popularity and, for new users with features, the user tower and the feature encoder. Scoring
uses the same streamed top-K as evaluation, so a served ranking equals the evaluated one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from trainpipe.evaluation.ranking_metrics import top_k

OUTPUT_COLUMNS = ("user", "rank", "item", "score", "source")


def _ids_index(ids: np.ndarray) -> pd.Index:
    return pd.Index(pd.Series(ids).astype(str).to_numpy())


def write_recommender(folder: Path, *, model_dir: Path, user_ids: Any, item_ids: Any, user_vectors: np.ndarray,
                      item_vectors: np.ndarray, seen: sp.csr_matrix, popularity: np.ndarray, user_encoder: dict | None,
                      meta: dict) -> None:
    """Everything Recommender.load needs, as plain files (no pickles)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, folder / "model", dirs_exist_ok=True)
    pd.DataFrame({"id": pd.Series(user_ids).astype(str)}).to_parquet(folder / "users.parquet", index=False)
    pd.DataFrame({"id": pd.Series(item_ids).astype(str)}).to_parquet(folder / "items.parquet", index=False)
    np.save(folder / "user_vectors.npy", user_vectors.astype(np.float32))
    np.save(folder / "item_vectors.npy", item_vectors.astype(np.float32))
    np.savez(folder / "seen.npz", indptr=seen.indptr.astype(np.int64), indices=seen.indices.astype(np.int64),
             shape=np.asarray(seen.shape, dtype=np.int64))
    np.save(folder / "popularity.npy", popularity.astype(np.float32))
    (folder / "meta.json").write_text(json.dumps({**meta, "user_encoder": user_encoder}, indent=2, default=str))


class Recommender:
    def __init__(self, folder: Path):
        folder = Path(folder)
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self.user_index = _ids_index(pd.read_parquet(folder / "users.parquet")["id"].to_numpy())
        self.item_ids = pd.read_parquet(folder / "items.parquet")["id"].to_numpy().astype(str)
        self.item_index = pd.Index(self.item_ids)
        self.U = torch.from_numpy(np.load(folder / "user_vectors.npy"))
        self.V = torch.from_numpy(np.load(folder / "item_vectors.npy"))
        with np.load(folder / "seen.npz") as s:
            self.seen = sp.csr_matrix((np.ones(len(s["indices"]), dtype=np.float32), s["indices"], s["indptr"]),
                                      shape=tuple(s["shape"]))
        self.popularity = torch.from_numpy(np.load(folder / "popularity.npy"))
        self._family: Any = None  # the ranking family (two_tower), loaded for new users with features

    @property
    def feature_columns(self) -> list[str]:
        encoder = self.meta.get("user_encoder") or {}
        return [*encoder.get("numeric", []), *encoder.get("categorical", [])]

    def _tower_vectors(self, features: pd.DataFrame) -> torch.Tensor:
        """New users: the user tower on their features with the unknown-id row (a zero id embedding)."""
        from trainpipe.data.side_features import FeatureEncoder
        from trainpipe.models import load_family

        if self._family is None:
            self._family = load_family(self.folder / "model")
        num, cat = FeatureEncoder.from_state(self.meta["user_encoder"]).transform(features)
        with torch.no_grad():
            ids = torch.full((len(features),), -1, dtype=torch.int64)
            return self._family.module.user_vectors(ids, torch.from_numpy(num), torch.from_numpy(cat)).float()

    def _exclusions(self, codes: np.ndarray, exclude_seen: bool, history: Any) -> sp.csr_matrix:
        n = len(codes)
        rows = sp.csr_matrix((n, len(self.item_ids)), dtype=np.float32)
        if exclude_seen:
            known = np.where(codes >= 0, codes, 0)
            rows = self.seen[known].multiply((codes >= 0)[:, None].astype(np.float32)).tocsr()
        if history is not None:
            lists = [list(h) if isinstance(h, (list, tuple, np.ndarray)) else [] for h in history]
            lengths = np.asarray([len(h) for h in lists], dtype=np.int64)
            flat = pd.Index([str(x) for h in lists for x in h], dtype=object)
            items = self.item_index.get_indexer(flat) if len(flat) else np.empty(0, dtype=np.int64)
            owner = np.repeat(np.arange(n), lengths)
            ok = items >= 0
            extra = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.float32), (owner[ok], items[ok])),
                                  shape=rows.shape)
            rows = rows + extra
        rows = rows.tocsr()
        rows.sum_duplicates()
        return rows

    def _user_vectors(self, users: np.ndarray, features: pd.DataFrame | None) -> tuple[torch.Tensor, np.ndarray]:
        """Vectors of known users; new users: the tower on their features, else marked for popularity."""
        codes = self.user_index.get_indexer(users)
        vectors = torch.zeros((len(users), self.V.shape[1]))
        source = np.where(codes >= 0, "model", "popularity").astype(object)
        known = np.flatnonzero(codes >= 0)
        vectors[torch.from_numpy(known)] = self.U[torch.from_numpy(codes[known])]
        new = np.flatnonzero(codes < 0)
        if len(new) and features is not None and self.feature_columns and \
                all(c in features.columns for c in self.feature_columns):
            rows = features.iloc[new].reset_index(drop=True)
            has = rows[self.feature_columns].notna().any(axis=1).to_numpy()
            if has.any():
                vectors[torch.from_numpy(new[has])] = self._tower_vectors(rows[has])
                source[new[has]] = "features"
        return vectors, source

    def top_codes(self, users: np.ndarray, k: int, exclusions: sp.csr_matrix | None,
                  features: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k item codes (-1: none left), scores and source per user; `exclusions` has one row per user."""
        vectors, source = self._user_vectors(users, features)
        popular = torch.from_numpy(source == "popularity")

        def score(positions: np.ndarray) -> torch.Tensor:
            scores = vectors[torch.from_numpy(positions)] @ self.V.T
            fallback = popular[torch.from_numpy(positions)]
            if fallback.any():
                scores[fallback] = self.popularity.expand(int(fallback.sum()), -1)
            return scores

        top, scores = top_k(score, np.arange(len(users)), max(1, min(int(k), len(self.item_ids))), exclusions)
        return top, scores, source

    def recommend(self, users: Any, k: int = 10, exclude_seen: bool = True, history: Any = None,
                  features: pd.DataFrame | None = None) -> pd.DataFrame:
        """Long format: one row per (user, rank). Unknown users: the user tower on their features when
        given, else the most popular items (`source` says which)."""
        users = pd.Series(users).astype(str).to_numpy()
        codes = self.user_index.get_indexer(users)
        top, scores, source = self.top_codes(users, k, self._exclusions(codes, exclude_seen, history), features)
        n, k = top.shape
        valid = top >= 0
        row = np.repeat(np.arange(n), k).reshape(n, k)[valid]
        rank = np.tile(np.arange(1, k + 1), (n, 1))[valid]
        return pd.DataFrame({"user": users[row], "rank": rank.astype(np.int64), "item": self.item_ids[top[valid]],
                             "score": scores[valid].astype(np.float64), "source": source[row].astype(str)})
