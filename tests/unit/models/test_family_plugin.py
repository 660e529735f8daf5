"""A model family costs one module and one registry line: a tiny family defined here, in the test file, is
registered, passes the contract suite every family runs, and trains, evaluates, registers and predicts through
the real `trainpipe` command, with no other module touched.

In this process it is registered with `register_family`; the `trainpipe` subprocesses find it the way an
installed plugin distribution is found, through the `trainpipe.families` entry-point group (a dist-info folder
on PYTHONPATH, as pip would write it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import REPO, run_cli_json
from tests.unit.models.test_contract import (check_declares_what_the_rest_of_trainpipe_reads,
                                             check_default_search_space_names_real_parameters,
                                             check_fits_predicts_reports_and_round_trips,
                                             check_report_returning_true_stops_training,
                                             check_same_seed_gives_identical_predictions)
from trainpipe.errors import ModelError
from trainpipe.models import (ENTRY_POINT_GROUP, get_family, is_family, load_family, register_family,
                              unregister_family)
from trainpipe.models.base import FitContext, FitResult, PreprocessingNeeds, ReportFn, ScaffoldDefaults


class TinyFamily:
    """Softmax (classification) or linear (regression) regression by full-batch gradient descent in numpy."""

    name = "tiny"
    needs = PreprocessingNeeds(tree_model=False, handles_missing=False)  # scaled numbers, one-hot categories
    iteration_param = "epochs"
    requirements: tuple[str | tuple[str, ...], ...] = ()  # numpy only: in every package already
    scaffold: ScaffoldDefaults | None = None
    PARAMS = {"epochs": 100, "lr": 0.5}

    def __init__(self, task: str, params: dict[str, Any], n_classes: int, seed: int, threads: int,
                 estimator: str | None = None):
        self.task, self.n_classes, self.seed = task, n_classes, seed
        self.params = {**self.PARAMS, **params}
        self.weights: np.ndarray | None = None

    @classmethod
    def check_config(cls, params: dict[str, Any], estimator: str | None, task: str) -> None:
        for name in params:
            if name not in cls.PARAMS:
                raise ModelError(f"model.params.{name}: tiny has no parameter {name!r}", key=f"model.params.{name}")

    @classmethod
    def default_search_space(cls, task: str, estimator: str | None = None) -> dict[str, dict]:
        return {"lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
                "epochs": {"type": "int", "low": 10, "high": 200}}

    @classmethod
    def user_code_hashes(cls, estimator: str | None) -> dict[str, str]:
        return {}

    def _outputs(self, X: np.ndarray) -> np.ndarray:
        assert self.weights is not None
        raw = np.c_[X, np.ones(len(X))] @ self.weights
        if self.task == "regression":
            return raw
        exp = np.exp(raw - raw.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def _validation(self, X: np.ndarray, y: np.ndarray) -> tuple[str, float]:
        out = self._outputs(X)
        if self.task == "regression":
            return "validation_mse", float(np.mean((out[:, 0] - y) ** 2))
        return "validation_log_loss", float(-np.mean(np.log(np.clip(out[np.arange(len(y)), y.astype(int)], 1e-12, 1))))

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
            early_stopping_rounds: int | None = None, report: ReportFn | None = None, train_metrics: bool = False,
            context: FitContext | None = None) -> FitResult:
        rng = np.random.default_rng(self.seed)
        inputs = np.c_[X, np.ones(len(X))].astype(np.float64)
        k = 1 if self.task == "regression" else self.n_classes
        target = y[:, None].astype(np.float64) if self.task == "regression" else np.eye(k)[y.astype(int)]
        self.weights = rng.normal(0.0, 0.01, (inputs.shape[1], k))
        history: dict[str, list[float]] = {}
        best, best_epoch, stopped, epoch = np.inf, 0, False, 0
        for epoch in range(int(self.params["epochs"])):
            self.weights -= float(self.params["lr"]) * inputs.T @ (self._outputs(X) - target) / len(X)
            name, value = self._validation(X_val, y_val)
            history.setdefault(name, []).append(value)
            if value < best:
                best, best_epoch = value, epoch
            elif early_stopping_rounds and epoch - best_epoch >= early_stopping_rounds:
                stopped = True
                break
            if report is not None and report(epoch, {name: value}):
                stopped = True
                break
        return FitResult(history=history, best_iteration=best_epoch if early_stopping_rounds else None,
                         iterations=epoch + 1, stopped_early=stopped)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._outputs(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = self._outputs(X)
        return out[:, 0] if self.task == "regression" else out.argmax(axis=1)

    def save(self, directory: Path) -> None:
        assert self.weights is not None
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "weights.npy", self.weights)
        (directory / "family.json").write_text(json.dumps({"family": self.name, "task": self.task, "seed": self.seed,
                                                           "n_classes": self.n_classes, "params": self.params}))

    @classmethod
    def load(cls, directory: Path) -> TinyFamily:
        meta = json.loads((directory / "family.json").read_text())
        model = cls(meta["task"], meta["params"], meta["n_classes"], meta["seed"], 1)
        model.weights = np.load(directory / "weights.npy")
        return model


FAST = {"epochs": 60, "lr": 0.5}


@pytest.fixture
def tiny():
    register_family("tiny", TinyFamily)
    yield "tiny"
    unregister_family("tiny")


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_registered_family_passes_the_contract_suite(tiny, task, tmp_path):
    assert get_family(tiny) is TinyFamily
    check_fits_predicts_reports_and_round_trips(tiny, FAST, task, tmp_path)
    check_report_returning_true_stops_training(tiny, {"epochs": 50})
    check_default_search_space_names_real_parameters(tiny)
    check_same_seed_gives_identical_predictions(tiny, FAST)
    check_declares_what_the_rest_of_trainpipe_reads(tiny)


def test_a_family_is_registered_by_import_path_and_unregistered():
    register_family("tiny_by_path", "tests.unit.models.test_family_plugin:TinyFamily", extra="tiny-plugin")
    try:
        assert is_family("tiny_by_path") and get_family("tiny_by_path") is TinyFamily
    finally:
        unregister_family("tiny_by_path")
    assert not is_family("tiny_by_path")
    with pytest.raises(ModelError, match="model.type: 'no_colon' is not an import path like package.module:Class"):
        register_family("bad", "no_colon")


def plugin_path(folder: Path) -> str:
    """A dist-info folder declaring the family under the entry-point group, as `pip install` of a plugin writes it."""
    dist = folder / "tiny_family_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-family-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ntiny = tests.unit.models.test_family_plugin:TinyFamily\n")
    return os.pathsep.join([str(folder), str(REPO)])


@pytest.mark.e2e
def test_an_installed_plugin_family_runs_the_whole_pipeline_and_serves(tiny, tmp_path, data_dir, store):
    env = {"PYTHONPATH": plugin_path(tmp_path / "site")}
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny-bc", "task": "binary", "store": str(store),
        "data": {"path": str(data_dir / "bc.parquet"), "target": "diagnosis", "positive_class": "malignant"},
        "model": {"type": "tiny", "params": {"epochs": 150, "lr": 0.3}},
        "training": {"early_stopping_rounds": 10, "threads": 1}, "gates": {"min": {"test_roc_auc": 0.9}}}))
    code, run = run_cli_json("run", str(config), env=env)
    assert code == 0, run
    assert all(s["status"] == "completed" for s in run["stages"]), run["stages"]
    assert run["metrics"]["test"]["roc_auc"] > 0.9
    assert run["registered"]["version"] == "1" and run["registered"]["aliases"] == ["challenger", "champion"]
    model_dir = Path(run["run_dir"]) / "train" / "model"
    assert json.loads((model_dir / "family.json").read_text())["family"] == "tiny"

    out = tmp_path / "predictions.parquet"  # another process loads the packaged model: the plugin again
    code, predicted = run_cli_json("predict", "models:/tiny-bc@champion", str(data_dir / "bc.parquet"), "--out", str(out),
                                   "--store", str(store), env=env)
    assert code == 0, predicted
    import pandas as pd

    assert len(pd.read_parquet(out)) == predicted["rows"] > 0
    assert isinstance(load_family(model_dir), TinyFamily)  # and this process reads it through the same class
