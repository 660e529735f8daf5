"""The served recommender: known users match evaluation's ranking, history is excluded, new users are
scored by the tower on their features or fall back to popularity."""

import numpy as np
import pandas as pd
import torch

from trainpipe.models.two_tower import RankingData, TwoTowerFamily
from trainpipe.data.side_features import FeatureEncoder
from trainpipe.evaluation.ranking_metrics import interaction_matrix, top_k
from trainpipe.registry.serving import Recommender, write_recommender


def build(tmp_path):
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 20
    user, item = rng.integers(0, n_users, 300), rng.integers(0, n_items, 300)
    profile = pd.DataFrame({"age": rng.normal(40, 10, n_users), "city": rng.choice(["a", "b"], n_users)})
    encoder = FeatureEncoder.fit(profile, ["age"], ["city"])
    num, cat = encoder.transform(profile)
    seen = interaction_matrix(user, item, n_users, n_items)
    model = TwoTowerFamily("ranking", {"epochs": 2, "batch_size": 32, "embedding_dim": 8, "id_dim": 8}, seed=0, threads=1)
    model.fit(RankingData(user=user, item=item, weight=np.ones(300, dtype=np.float32), n_users=n_users, n_items=n_items,
                          user_num=num, user_cat=cat, user_cards=encoder.cardinalities,
                          validation_relevant=seen, exclude=seen, ks=(5,)))
    model.save(tmp_path / "model")
    U, V = model.vectors()
    write_recommender(tmp_path / "rec", model_dir=tmp_path / "model", user_ids=np.arange(n_users) + 100,
                      item_ids=np.array([f"i{j}" for j in range(n_items)]), user_vectors=U, item_vectors=V, seen=seen,
                      popularity=np.bincount(item, minlength=n_items), user_encoder=encoder.state_dict(), meta={})
    return Recommender(tmp_path / "rec"), U, V, seen


def test_known_users_get_evaluations_ranking_without_seen_items(tmp_path):
    rec, U, V, seen = build(tmp_path)
    out = rec.recommend([100, "101"], k=5)
    want, _ = top_k(lambda u: torch.from_numpy(U)[torch.from_numpy(u)] @ torch.from_numpy(V).T, np.array([0, 1]), 5, seen)
    assert out[out["user"] == "100"]["item"].tolist() == [f"i{j}" for j in want[0]]
    assert set(out["source"]) == {"model"} and out["rank"].tolist() == [1, 2, 3, 4, 5] * 2
    assert not set(seen[0].indices) & {int(i[1:]) for i in out[out["user"] == "100"]["item"]}


def test_history_is_excluded_and_include_seen_works(tmp_path):
    rec, *_ = build(tmp_path)
    first = rec.recommend(["100"], k=3, exclude_seen=False)["item"].tolist()
    again = rec.recommend(["100"], k=3, exclude_seen=False, history=[[first[0]]])["item"].tolist()
    assert first[0] not in again and again[:2] == first[1:]


def test_new_users_use_features_or_popularity(tmp_path):
    rec, *_ = build(tmp_path)
    users = pd.DataFrame({"user": ["new1", "new2"], "age": [30.0, None], "city": ["a", None]})
    out = rec.recommend(users["user"], k=4, features=users)
    assert out.groupby("user")["source"].first().to_dict() == {"new1": "features", "new2": "popularity"}
    popular = out[out["user"] == "new2"]["score"].to_numpy()
    assert np.all(np.diff(popular) <= 0)
