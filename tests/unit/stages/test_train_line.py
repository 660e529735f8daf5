"""The train stage's line counts the best iteration from 1, as the progress lines count epochs and rounds, while
`best_iteration` stays 0-based where it is stored (xgboost's own index, MLflow's metric, the tuner's hand-over)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from trainpipe.models import ModelConfig, build_family
from trainpipe.stages.train import line


@pytest.mark.parametrize("family, params, monitored", [
    ("xgboost", {"n_estimators": 80, "learning_rate": 0.5, "max_depth": 4}, "validation_log_loss"),
    ("torch_mlp", {"epochs": 6, "batch_size": 64, "hidden_dims": [8]}, "validation_loss")])
def test_the_line_names_the_best_iteration_as_the_progress_lines_count_it(family, params, monitored):
    X, y = load_breast_cancer(return_X_y=True)
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.3, random_state=0)
    model = build_family(ModelConfig(type=family, params=params), "binary", 2, 0, 1)
    result = model.fit(X_train, y_train, X_val, y_val, early_stopping_rounds=3)
    lowest = int(np.argmin(result.history[monitored]))  # 0-based, as stored
    assert result.best_iteration == lowest
    shown = line({"family": family, "iterations": result.iterations, "best_iteration": result.best_iteration})
    assert shown == f"{family}: {result.iterations} iteration(s), best {lowest + 1}"  # `epoch {lowest + 1}/N`


def test_the_line_says_nothing_of_a_best_iteration_without_early_stopping():
    assert line({"family": "logistic", "iterations": 1, "best_iteration": None}) == "logistic: 1 iteration(s)"
