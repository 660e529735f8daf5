"""Splits never leak: held-out interactions are disjoint from train, later in time, and never a seen pair."""

import numpy as np
import pytest

from trainpipe.ranking.config import RankingConfig, RankingSplit
from trainpipe.ranking.generate import synthetic_interactions
from trainpipe.data.interactions import prepare
from trainpipe.data.ranking_split import make_split


@pytest.fixture(scope="module")
def data():
    frame = synthetic_interactions(300, 120, 6000, seed=3).frame
    frame = frame.iloc[np.r_[np.arange(len(frame)), np.arange(200)]]  # 200 repeated pairs (kept)
    return prepare(frame, RankingConfig(user="user_id", item="item_id", time="timestamp", duplicates="keep"))[0]


def pairs(data, idx):
    return set(zip(data.user[idx].tolist(), data.item[idx].tolist()))


@pytest.mark.parametrize("strategy", ["leave_last", "time", "random"])
def test_no_test_interaction_leaks_into_training(data, strategy):
    parts, summary = make_split(data, RankingSplit(strategy=strategy), seed=0)
    train, val, test = parts["train"], parts["validation"], parts["test"]
    assert not (set(train) & set(test)) and not (set(train) & set(val)) and not (set(val) & set(test))
    assert not pairs(data, test) & (pairs(data, train) | pairs(data, val))  # no held-out pair was seen before
    assert not pairs(data, val) & pairs(data, train)
    assert summary["sizes"]["test"] == len(test) > 0


def test_leave_last_holds_out_each_users_newest(data):
    parts, _ = make_split(data, RankingSplit(strategy="leave_last", test_per_user=2, validation_per_user=1), seed=0)
    for user in np.unique(data.user[parts["test"]])[:50]:
        t_train = data.time[parts["train"]][data.user[parts["train"]] == user]
        t_val = data.time[parts["validation"]][data.user[parts["validation"]] == user]
        t_test = data.time[parts["test"]][data.user[parts["test"]] == user]
        assert t_train.max() <= t_test.min() and (len(t_val) == 0 or t_val.max() <= t_test.min())
        assert len(t_test) <= 2


def test_global_time_cut_is_strict(data):
    parts, _ = make_split(data, RankingSplit(strategy="time", validation_fraction=0.1, test_fraction=0.2), seed=0)
    assert data.time[parts["train"]].max() < data.time[parts["validation"]].min()
    assert data.time[parts["validation"]].max() < data.time[parts["test"]].min()
    assert abs(len(parts["test"]) / len(data) - 0.2) < 0.05


def test_random_is_seeded(data):
    a, _ = make_split(data, RankingSplit(strategy="random"), seed=1)
    b, _ = make_split(data, RankingSplit(strategy="random"), seed=1)
    c, _ = make_split(data, RankingSplit(strategy="random"), seed=2)
    assert np.array_equal(a["test"], b["test"]) and not np.array_equal(a["test"], c["test"])
