"""Data sets for examples, tests and benchmarks: one bundled real set and seeded generators."""

from __future__ import annotations

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
