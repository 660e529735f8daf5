"""The two_tower defaults that `trainpipe init --task ranking` writes, trained on real ratings: MovieLens 100K
(shipped in the recbole wheel, installed by `make setup`), a slice of its users, leave-last-one-out by time.

Issue 16: on real data the default model lost to the PureSVD baseline it ships with. This holds the defaults
to their measured level on real data (benchmarks/bench_ranking_quality.py has the full set): on these 400 users
(measured: Recall@10 validation 0.140 / test 0.1075 against PureSVD 0.145 / 0.110 and most-popular 0.080 /
0.0825) at least 1.2x most-popular and 0.95x PureSVD on validation and test, the same users and exclusions.
On all 943 users the defaults beat PureSVD on both (docs/ranking.md, Defaults on real data).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from trainpipe.config import config_from_dict
from trainpipe.errors import MissingDependency
from trainpipe.models.two_tower import RankingData, TwoTowerFamily
from trainpipe.evaluation import baselines
from trainpipe.data.interactions import prepare
from trainpipe.evaluation.ranking_metrics import DotScorer, evaluate, interaction_matrix
from trainpipe.tools.scaffold import scaffold_ranking
from trainpipe.data.ranking_split import make_split

pytestmark = pytest.mark.slow
USERS = 400  # the first 400 users of 943: ~41k ratings, ~1.6k movies


@pytest.fixture(scope="module")
def ratings():
    from trainpipe.tools.datasets import movielens_100k

    try:
        frame = movielens_100k()
    except MissingDependency as exc:
        pytest.fail(f"{exc.message} (make setup installs it)")
    return frame[frame["userId"] <= USERS]


def scaffolded(tmp_path, frame):
    """The pipeline `trainpipe init --task ranking ... --time timestamp` writes for this table."""
    frame.to_csv(tmp_path / "ratings.csv", index=False)
    info = scaffold_ranking(tmp_path / "ml", str(tmp_path / "ratings.csv"), "userId", "movieId", time="timestamp")
    doc = yaml.safe_load(open(info["pipeline"]))
    doc["data"]["path"] = str(tmp_path / "ratings.csv")
    return config_from_dict(doc)


def scores(config, frame) -> dict[str, dict[str, float]]:
    ranking = config.ranking
    data, _ = prepare(frame, ranking)
    parts, _ = make_split(data, ranking.split, config.seed)
    m = {name: interaction_matrix(data.user[i], data.item[i], data.n_users, data.n_items) for name, i in parts.items()}
    seen = (m["train"] + m["validation"]).tocsr()
    exclude = {"validation": m["train"], "test": seen}
    train = parts["train"]
    model = TwoTowerFamily("ranking", dict(config.model.params), 0, config.seed, threads=1)
    model.fit(RankingData(user=data.user[train], item=data.item[train], weight=data.weight[train],
                          n_users=data.n_users, n_items=data.n_items, validation_relevant=m["validation"],
                          exclude=m["train"], ks=tuple(ranking.k)),
              early_stopping_rounds=config.training.early_stopping_rounds)
    U, V = (torch.from_numpy(x) for x in model.vectors())
    scorers = {"two_tower": DotScorer(U, V)}
    scorers.update({name: baselines.build(name, m["train"], ranking, config.seed) for name in ("svd", "popularity")})
    popularity = np.asarray(m["train"].sum(axis=0)).ravel()
    return {name: {split: evaluate(fn, m[split], exclude[split], [10], popularity)[0]["recall_at_10"]
                   for split in ("validation", "test")} for name, fn in scorers.items()}


@pytest.mark.extended
def test_the_scaffolded_two_tower_keeps_up_with_pure_svd_and_beats_most_popular_on_real_ratings(tmp_path, ratings):
    config = scaffolded(tmp_path, ratings)
    assert config.gates.beat_baselines  # a model that loses to a baseline is not registered by default
    recall = scores(config, ratings)
    for split in ("validation", "test"):
        assert recall["two_tower"][split] >= 1.2 * recall["popularity"][split], recall
        assert recall["two_tower"][split] >= 0.95 * recall["svd"][split], recall
