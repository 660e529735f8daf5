"""column_plan: every output column read on its own is bitwise the column `transform` gives; anything it does not
reproduce (another step kind, another arithmetic dtype) is declined, never approximated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainpipe.data.column_plan import CategoryColumn, column_plan
from trainpipe.data.features import FeaturesConfig, build_preprocessor, select_columns, transform


def mixed(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "count": rng.integers(-5, 1000, rows),  # int64: converted to float64 as sklearn converts it
        "amount": rng.gamma(2.0, 1e4, rows) + 1e6,  # large mean against its spread
        "ratio": rng.normal(0, 1e-3, rows),
        "plan": rng.choice(["basic", "plus", "pro", "rare1", "rare2"], rows, p=[0.5, 0.3, 0.16, 0.02, 0.02]),
        "flag": rng.random(rows) < 0.3,
        "kept": rng.normal(size=rows),
    })
    for column in ("amount", "ratio", "plan", "kept"):
        frame[column] = frame[column].mask(rng.random(rows) < 0.1)
    return frame


def fitted(impute: str, scale: str, passthrough: bool, max_categories: int = 50):
    train = mixed(400, 0)
    config = FeaturesConfig.model_validate({"numeric": {"impute": impute, "scale": scale},
                                            "categorical": {"max_categories": max_categories},
                                            "passthrough": ["kept"] if passthrough else []})
    roles = select_columns(train, config, exclude=[] if passthrough else ["kept"])
    pre, _ = build_preprocessor(roles, config, tree_model=False, handles_missing=False, categorical_codes=True)
    return pre.fit(train)


@pytest.mark.parametrize("impute", ["median", "mean", "zero", "none"])
@pytest.mark.parametrize("scale", ["standard", "robust", "minmax", "none"])
def test_each_column_read_alone_is_bitwise_the_transformed_matrix_column(impute, scale):
    pre = fitted(impute, scale, passthrough=scale == "robust", max_categories=3)  # 3: rare plans grouped
    new = mixed(300, 1)
    new.loc[:4, "plan"] = ["never seen", None, "rare1", "rare2", "pro"]  # unknown, missing, infrequent
    new.loc[5:7, "amount"] = [np.nan, 1e9, -1e9]  # missing; far outside the training range (minmax without clip)
    plan = column_plan(pre)
    assert plan is not None
    expected = transform(pre, new)
    assert len(plan) == expected.shape[1]
    for i, column in enumerate(plan):
        values = column.lookup(new) if isinstance(column, CategoryColumn) else column.values(new)
        np.testing.assert_array_equal(np.asarray(values, dtype=np.float32).view(np.uint32),
                                      expected[:, i].view(np.uint32), err_msg=f"column {i}")


@pytest.mark.parametrize("dtypes", [{"count": "float32", "amount": "float32", "ratio": "float32"},  # float32 arithmetic
                                    {"count": "Int64"},  # nullable: another conversion
                                    {"amount": "object"}])
def test_numeric_parts_whose_dtypes_change_sklearns_arithmetic_are_declined(dtypes):
    pre = fitted("median", "standard", passthrough=False)
    plan = column_plan(pre)
    new = mixed(50, 2).astype(dtypes)
    assert plan is not None and plan[0].values(new) is None  # type: ignore[union-attr]


def test_float32_mixed_with_wider_columns_is_still_computed_in_float64_and_read():
    pre = fitted("median", "standard", passthrough=False)
    new = mixed(50, 2).astype({"ratio": "float32"})
    plan = column_plan(pre)
    assert plan is not None
    np.testing.assert_array_equal(plan[2].values(new).astype(np.float32), transform(pre, new)[:, 2])  # type: ignore[union-attr]


@pytest.mark.parametrize("what", ["onehot", "datetime", "unfitted"])
def test_preprocessors_with_other_parts_have_no_plan(what):
    train = mixed(200, 0)
    if what == "datetime":
        train["when"] = pd.date_range("2024-01-01", periods=len(train), freq="h")
    config = FeaturesConfig.model_validate({"categorical": {"encoding": "onehot"}} if what == "onehot" else {})
    roles = select_columns(train, config, exclude=["kept"])
    pre, _ = build_preprocessor(roles, config, tree_model=False, handles_missing=False,
                                categorical_codes=what != "onehot")
    assert column_plan(pre if what == "unfitted" else pre.fit(train)) is None
