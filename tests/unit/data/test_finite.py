"""The one check for infinite numbers, shared by training data and prediction input."""

import numpy as np
import pandas as pd
import pytest

from trainpipe.data.finite import apply_infinite_policy, infinite_counts
from trainpipe.errors import DataError


def frame():
    return pd.DataFrame({"ok": [1.0, 2.0, np.nan], "big": [1.0, 1e308, 2.0], "neg": [-np.inf, 0.0, 1.0],
                         "n": [1, 2, 3], "s": ["a", "inf", None]})


def test_inf_and_values_beyond_float32_are_found_per_column():
    assert infinite_counts(frame()) == {"big": (1, 1e308), "neg": (1, -np.inf)}
    assert infinite_counts(frame(), ["ok", "n"]) == {}


def test_error_names_the_column_and_the_switch():
    with pytest.raises(DataError) as err:
        apply_infinite_policy(frame(), "error", "new.csv")
    assert err.value.message.startswith("new.csv: column 'big'") and "data.infinite: missing" in err.value.message
    assert err.value.key == "column big"


def test_missing_replaces_only_those_values_and_leaves_the_input_alone():
    original = frame()
    out = apply_infinite_policy(original, "missing", "x")
    assert out["big"].isna().tolist() == [False, True, False] and out["neg"].isna().tolist() == [True, False, False]
    assert original["big"][1] == 1e308 and out["ok"].equals(original["ok"])
