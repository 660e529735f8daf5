"""Cleaning the interactions table: columns, positives, duplicates and the min-count filter, with counts."""

import numpy as np
import pandas as pd
import pytest

from trainpipe.errors import ValidationFailed
from trainpipe.ranking.config import RankingConfig
from trainpipe.data.interactions import prepare


def frame():
    return pd.DataFrame({"u": ["a", "a", "a", "b", "b", "c", None, "a"],
                         "i": ["x", "y", "z", "x", "y", "x", "x", "x"],
                         "t": [1, 2, 3, 1, 2, 5, 1, 9],
                         "r": [5, 4, 1, 5, 5, 2, 5, 3]})


def test_missing_column_names_the_key():
    with pytest.raises(ValidationFailed, match=r"ranking.item: column 'item' is not in the data") as exc:
        prepare(frame(), RankingConfig(user="u", item="item"))
    assert exc.value.key == "ranking.item"


def test_threshold_duplicates_and_counts_are_reported():
    data, report = prepare(frame(), RankingConfig(user="u", item="i", time="t", rating="r", positive_threshold=4))
    # dropped: missing id (row 6), below 4 (rows 2, 5, 7); the rest unique
    assert report["dropped"] == {"missing_id": 1, "below_threshold": 3, "missing_time": 0, "duplicates": 0,
                                 "min_interactions": 0}
    assert list(data.user_ids) == ["a", "b"] and list(data.item_ids) == ["x", "y"] and len(data) == 4


@pytest.mark.parametrize("policy, kept_time", [("last", 9.0), ("first", 1.0)])
def test_duplicate_policies_keep_by_time(policy, kept_time):
    data, report = prepare(frame(), RankingConfig(user="u", item="i", time="t", duplicates=policy))
    a, x = list(data.user_ids).index("a"), list(data.item_ids).index("x")
    rows = (data.user == a) & (data.item == x)
    assert rows.sum() == 1 and data.time[rows][0] == kept_time and report["dropped"]["duplicates"] == 1


def test_duplicates_error_and_keep():
    with pytest.raises(ValidationFailed, match="ranking.duplicates: 1 repeated"):
        prepare(frame(), RankingConfig(user="u", item="i", duplicates="error"))
    data, report = prepare(frame(), RankingConfig(user="u", item="i", duplicates="keep"))
    assert len(data) == 7 and any("kept" in w for w in report["warnings"])


def test_min_counts_are_applied_until_stable():
    # user c has 1 interaction; dropping it leaves item w with 1, which then goes too, which leaves user d with 1
    f = pd.DataFrame({"u": ["a", "a", "b", "b", "c", "d", "d"], "i": ["x", "y", "x", "y", "w", "w", "v"]})
    data, report = prepare(f, RankingConfig(user="u", item="i", min_user_interactions=2, min_item_interactions=2))
    assert list(data.user_ids) == ["a", "b"] and list(data.item_ids) == ["x", "y"]
    assert report["dropped"]["min_interactions"] == 3 and report["filter_rounds"] >= 3
    assert data.user.max() == 1 and data.item.max() == 1  # re-encoded without gaps


def test_dates_as_text_are_parsed_and_missing_times_dropped():
    f = pd.DataFrame({"u": [1, 1, 2], "i": [1, 2, 1], "t": ["2024-01-02", None, "2024-01-01"]})
    data, report = prepare(f, RankingConfig(user="u", item="i", time="t"))
    assert report["dropped"]["missing_time"] == 1 and len(data) == 2 and np.all(np.isfinite(data.time))


def test_text_rating_is_refused():
    f = pd.DataFrame({"u": [1], "i": [1], "r": ["good"]})
    with pytest.raises(ValidationFailed, match="ranking.rating: column 'r' should hold numbers"):
        prepare(f, RankingConfig(user="u", item="i", rating="r", positive_threshold=3))
