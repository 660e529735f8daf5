"""DatetimeParts: calendar numbers from datetime columns, the same from parsed text, NaN where missing."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainpipe.data.datetimes import DatetimeParts
from trainpipe.data.features import FeaturesConfig, build_preprocessor, select_columns


def test_parts_of_datetimes_text_and_aware_values_agree():
    stamps = pd.Series(pd.to_datetime(["2024-03-05 14:30", None, "2023-12-31 00:00"]))
    parts = DatetimeParts().fit(pd.DataFrame({"at": stamps}))
    expected = [[2024, 3, 5, 1, 65, 14], [np.nan] * 6, [2023, 12, 31, 6, 365, 0]]
    np.testing.assert_array_equal(parts.transform(pd.DataFrame({"at": stamps})), expected)
    as_text = pd.DataFrame({"at": ["2024-03-05 14:30", None, "2023-12-31"]})
    np.testing.assert_array_equal(parts.transform(as_text), expected)
    aware = pd.DataFrame({"at": stamps.dt.tz_localize("Europe/Paris")})  # 14:30 in Paris is 13:30 UTC
    assert parts.transform(aware)[0, 5] == 13
    assert list(parts.get_feature_names_out()) == [f"at_{p}" for p in ("year", "month", "day", "dayofweek", "dayofyear", "hour")]


def test_datetime_columns_become_features_scaled_for_non_tree_models():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "when": pd.date_range("2024-01-01", periods=4, freq="MS"),
                          "y": [0, 1, 0, 1]})
    roles = select_columns(frame, FeaturesConfig(), exclude=["y"])
    assert roles["datetime"] == ["when"] and "when" not in roles["dropped"]
    for tree, scaled in ((True, False), (False, True)):
        pre, _ = build_preprocessor(roles, FeaturesConfig(), tree_model=tree, handles_missing=tree)
        out = pre.fit(frame).transform(frame)
        month = list(pre.get_feature_names_out()).index("when_month")
        assert (abs(out[:, month].mean()) < 1e-6) == scaled  # standard-scaled months average to 0
