"""torch_mlp's folded predictor (preprocessor and embeddings folded into the first layer) gives today's scores:
bitwise without categories, to float32 rounding with them, the same class except at threshold ties, unknown and
missing categories included; whatever it does not fold is predicted through the matrix as before."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainpipe.data.features import FeaturesConfig, build_preprocessor, select_columns, transform
from trainpipe.models.base import FitContext
from trainpipe.models.tabular import TorchMLPFamily

pytest.importorskip("torch")


def categorical_info(pre, roles: dict, X: np.ndarray) -> dict | None:
    """What the features stage hands torch_mlp (tasks/tabular.py): the code columns and their cardinalities."""
    if not roles["categorical"]:
        return None
    first = len(roles["numeric"])
    columns = list(range(first, first + len(roles["categorical"])))
    return {"columns": columns, "names": roles["categorical"], "native": False,
            "cardinalities": [int(max(np.nanmax(X[:, i], initial=-1), -1)) + 1 for i in columns]}


def trained(train: pd.DataFrame, target: str, task: str, config: FeaturesConfig | None = None,
            params: dict | None = None):
    config = config or FeaturesConfig()
    roles = select_columns(train, config, exclude=[target])
    pre, _ = build_preprocessor(roles, config, **vars(TorchMLPFamily.needs))
    pre.fit(train)
    X = transform(pre, train)
    y = train[target].to_numpy()
    n_classes = 0 if task == "regression" else len(np.unique(y))
    model = TorchMLPFamily(task, {"hidden_dims": [32, 16], "epochs": 2, "batch_size": 128, **(params or {})},
                           n_classes, seed=0, threads=1)
    model.fit(X, y.astype(np.float64 if task == "regression" else np.int64), X, y,
              context=FitContext(categorical=categorical_info(pre, roles, X)))
    return pre, model


def today(pre, model: TorchMLPFamily, frame: pd.DataFrame) -> np.ndarray:
    X = transform(pre, frame)
    return model.predict(X) if model.task == "regression" else model.predict_proba(X)


def churn_like(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"tenure": rng.integers(0, 72, rows), "charges": rng.gamma(4.0, 18.0, rows),
                          "plan": rng.choice(["a", "b", "c", "d"], rows), "senior": rng.random(rows) < 0.2,
                          "region": rng.choice([f"r{i}" for i in range(12)], rows)})
    frame["charges"] = frame["charges"].mask(rng.random(rows) < 0.1)
    frame["plan"] = frame["plan"].mask(rng.random(rows) < 0.05)
    logit = 0.05 * frame["tenure"] - 0.02 * frame["charges"].fillna(70) + (frame["plan"] == "a") + frame["senior"]
    frame["y"] = (logit + rng.normal(0, 1, rows) > logit.median()).astype(int)
    return frame


def test_numeric_only_inputs_give_bitwise_todays_scores_with_missing_values_filled():
    train = churn_like(600, 0)[["tenure", "charges", "y"]]
    pre, model = trained(train, "y", "binary")
    folded = model.fold_preprocessor(pre)
    new = churn_like(500, 1)[["tenure", "charges"]]
    new.loc[:50, "charges"] = np.nan
    assert folded is not None and new["charges"].isna().sum() > 50
    np.testing.assert_array_equal(folded.scores(new), today(pre, model, new))


def close_with_the_same_classes(got: np.ndarray, expected: np.ndarray, threshold: float = 0.5) -> None:
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    clear = np.abs(expected[:, 1] - threshold) > 1e-6  # a tie at the threshold may go either way
    np.testing.assert_array_equal((got[clear, 1] >= threshold), (expected[clear, 1] >= threshold))


@pytest.mark.parametrize("threaded", [False, True])
def test_categories_fold_into_the_first_layer_and_unknown_or_missing_ones_behave_as_today(threaded, monkeypatch):
    from trainpipe.data import categories

    if threaded:
        monkeypatch.setattr(categories, "PARALLEL_ROWS", 1)  # the columns read on threads, as for large frames
    train = churn_like(800, 0)
    pre, model = trained(train, "y", "binary", FeaturesConfig.model_validate({"categorical": {"max_categories": 8}}))
    folded = model.fold_preprocessor(pre)
    assert folded is not None and folded.table is not None
    new = churn_like(600, 1).drop(columns="y")
    new.loc[:9, "plan"] = ["never seen", None, "a", "zzz", None, "b", "c", "d", "", "A"]
    new.loc[10:12, "region"] = ["r99", None, "r11"]  # unknown, missing, and one of the infrequent (max_categories=8)
    close_with_the_same_classes(folded.scores(new), today(pre, model, new))
    x_num, codes = folded.read(new)
    unknown_or_missing = [0, 1, 3, 4, 8, 9]
    assert (codes[unknown_or_missing, 0] == 0).all()  # row 0 of the first table: the "unknown or missing" embedding


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_multiclass_and_regression_fold_too(task):
    train = churn_like(600, 0)
    if task == "multiclass":
        train["y"] = train["y"] + (train["tenure"] > 50)
    else:
        train["y"] = train["tenure"] * 0.5 + train["charges"].fillna(0)
    pre, model = trained(train, "y", task)
    folded = model.fold_preprocessor(pre)
    new = churn_like(300, 2).drop(columns="y")
    assert folded is not None
    got, expected = folded.scores(new), today(pre, model, new)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 if task == "regression" else 1e-6)
    if task == "multiclass":
        assert (got.argmax(1) == expected.argmax(1)).mean() > 0.99  # differences only where two classes tie


def test_real_data_breast_cancer_with_missing_values_and_categories_matches_today():
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True).frame.rename(columns=lambda c: c.replace(" ", "_"))
    rng = np.random.default_rng(0)
    data["size_band"] = pd.cut(data["mean_radius"], [0, 12, 15, 18, 100], labels=["s", "m", "l", "xl"]).astype(str)
    data["clinic"] = rng.choice(["north", "south", "east"], len(data))
    for column in ("mean_texture", "worst_area", "size_band"):
        data[column] = data[column].mask(rng.random(len(data)) < 0.08)
    train, new = data.iloc[:400], data.iloc[400:].drop(columns="target").copy()
    new.loc[new.index[:5], "clinic"] = "west"  # unseen at fit time
    pre, model = trained(train, "target", "binary", params={"embedding_dims": {"clinic": 3}})
    folded = model.fold_preprocessor(pre)
    assert folded is not None
    close_with_the_same_classes(folded.scores(new), today(pre, model, new))


def test_preprocessors_it_does_not_fold_are_refused_and_declined_frames_return_none():
    train = churn_like(300, 0)
    train["when"] = pd.date_range("2024-01-01", periods=len(train), freq="D")  # datetime parts: not folded
    pre, model = trained(train, "y", "binary")
    assert model.fold_preprocessor(pre) is None
    plain_pre, plain = trained(churn_like(300, 0), "y", "binary")
    folded = plain.fold_preprocessor(plain_pre)
    assert folded is not None
    assert folded.scores(churn_like(20, 1).astype({"charges": "Float64"})) is None  # nullable numbers: the matrix path
