"""A pipeline written by `trainpipe init` matches plain xgboost on the same split and parameters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from tests.e2e.test_cli import telco_like


def plain_xgboost_auc(frame: pd.DataFrame, split: dict, params: dict, rounds: int, early_stopping: int, seed: int) -> float:
    """What a user would write by hand: pandas categoricals straight into xgboost, same rows, same params."""
    y = (frame.pop("Churn") == "Yes").astype(int).to_numpy()
    frame = frame.drop(columns=["customerID"])
    frame["TotalCharges"] = pd.to_numeric(frame["TotalCharges"].str.strip(), errors="coerce")
    for column in frame.columns:
        if frame[column].dtype == object or str(frame[column].dtype) in ("str", "string"):
            frame[column] = frame[column].astype("category")
    dm = {name: xgb.DMatrix(frame.iloc[rows], label=y[rows], enable_categorical=True) for name, rows in split.items()}
    booster = xgb.train({"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist", "seed": seed,
                         "nthread": 2, **params}, dm["train"], num_boost_round=rounds, evals=[(dm["validation"], "validation")],
                        early_stopping_rounds=early_stopping, verbose_eval=False)
    proba = booster.predict(dm["test"], iteration_range=(0, booster.best_iteration + 1))
    return roc_auc_score(y[split["test"]], proba)


def test_init_pipeline_reaches_plain_xgboost_test_auc(cli_json, tmp_path, store):
    frame = telco_like(rows=20_000, seed=5)
    frame.to_csv(tmp_path / "telco.csv", index=False)
    code, doc = cli_json("init", str(tmp_path / "proj"), "--data", str(tmp_path / "telco.csv"), "--target", "Churn",
                         "--model", "xgboost")
    assert code == 0
    code, result = cli_json("run", str(tmp_path / "proj" / "pipeline.yaml"))
    assert code == 0, result
    with np.load(Path(result["run_dir"], "split", "split.npz")) as npz:
        split = {name: npz[name] for name in ("train", "validation", "test")}
    family = json.loads(Path(result["run_dir"], "train", "model", "family.json").read_text())
    params = {k: v for k, v in family["params"].items() if k not in ("n_estimators", "tree_method")}
    plain = plain_xgboost_auc(pd.read_csv(tmp_path / "telco.csv"), split, params, family["params"]["n_estimators"], 50,
                              seed=family["seed"])
    ours = result["metrics"]["test"]["roc_auc"]
    print(f"trainpipe test AUC {ours:.4f}, plain xgboost {plain:.4f}")
    assert abs(ours - plain) <= 0.005, (ours, plain)
