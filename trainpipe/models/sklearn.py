"""Any scikit-learn estimator, named by import path in `model.estimator`."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import sys
import sysconfig
from pathlib import Path
from typing import Any

import numpy as np

from trainpipe.errors import ModelError
from trainpipe.models.base import (FitContext, FitResult, PreprocessingNeeds, ReportFn, ScaffoldDefaults,
                                  predict_from_proba, probabilities_from_binary)

DEFAULT_ESTIMATORS = {
    "binary": "sklearn.ensemble.HistGradientBoostingClassifier",
    "multiclass": "sklearn.ensemble.HistGradientBoostingClassifier",
    "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
}


def import_estimator(path: str) -> type:
    """Import `package.module.Class` and check it looks like a scikit-learn estimator."""
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise ModelError(f"model.estimator: {path!r} is not an import path like sklearn.linear_model.LogisticRegression",
                         key="model.estimator")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"model.estimator: cannot import module {module_name!r} ({exc})", key="model.estimator") from exc
    if not hasattr(module, class_name):
        raise ModelError(f"model.estimator: module {module_name!r} has no attribute {class_name!r}", key="model.estimator")
    cls = getattr(module, class_name)
    if not inspect.isclass(cls) or not all(hasattr(cls, m) for m in ("fit", "predict", "get_params")):
        raise ModelError(f"model.estimator: {path!r} is not a scikit-learn estimator (needs fit, predict, get_params)",
                         key="model.estimator")
    return cls


def user_source_hash(path: str) -> str | None:
    """Hash of the source file that defines a user's estimator; None for installed libraries.

    Editing a custom estimator must invalidate cached training results.
    """
    module_name = path.rpartition(".")[0]
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    source = getattr(module, "__file__", None)
    if not source:
        return None
    installed = [sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")]
    if any(str(Path(source).resolve()).startswith(str(Path(p).resolve())) for p in installed):
        return None
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


class SklearnFamily:
    name = "sklearn"
    needs = PreprocessingNeeds(tree_model=False, handles_missing=False)
    fit_releases_gil = False
    iteration_param = None  # an estimator stops by its own parameters
    requirements = ()  # scikit-learn is in every package
    scaffold = ScaffoldDefaults(params={}, early_stopping_rounds=None,
                                estimator={"regression": "sklearn.ensemble.HistGradientBoostingRegressor",
                                           "classification": "sklearn.ensemble.HistGradientBoostingClassifier"})

    def __init__(self, task: str, params: dict[str, Any], n_classes: int, seed: int, threads: int,
                 estimator: str | None = None):
        self.task, self.n_classes, self.seed, self.threads = task, n_classes, seed, threads
        self.params = dict(params)
        self.estimator_path = estimator or DEFAULT_ESTIMATORS[task]
        self.estimator: Any = None

    @classmethod
    def check_config(cls, params: dict[str, Any], estimator: str | None, task: str) -> None:
        est_cls = import_estimator(estimator or DEFAULT_ESTIMATORS[task])
        try:
            accepted = set(est_cls().get_params(deep=False))
        except TypeError:
            accepted = set(inspect.signature(est_cls).parameters)
        for name in params:
            if name not in accepted:
                raise ModelError(f"model.params.{name}: {est_cls.__name__} has no parameter {name!r}",
                                 key=f"model.params.{name}")

    def _build(self) -> Any:
        est_cls = import_estimator(self.estimator_path)
        params = dict(self.params)
        accepted = set(est_cls().get_params(deep=False))
        if "random_state" in accepted:
            params.setdefault("random_state", self.seed)
        if "n_jobs" in accepted:
            params.setdefault("n_jobs", self.threads)
        try:
            return est_cls(**params)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"model.params: {est_cls.__name__} rejected the parameters: {exc}", key="model.params") from exc

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
            early_stopping_rounds: int | None = None, report: ReportFn | None = None,
            train_metrics: bool = False, context: FitContext | None = None) -> FitResult:
        """One `estimator.fit`: no iterations to stop early or report progress on, so `context` is not used."""
        self.estimator = self._build()
        try:
            self.estimator.fit(X, y)
        except ValueError as exc:
            raise ModelError(f"model.estimator: {self.estimator_path} failed to fit: {str(exc).splitlines()[0]}",
                             key="model.estimator") from exc
        history: dict[str, list[float]] = {}
        if report is not None and self.task != "regression" and hasattr(self.estimator, "predict_proba"):
            from sklearn.metrics import log_loss

            value = float(log_loss(y_val, self.predict_proba(X_val), labels=list(range(self.n_classes))))
            history["validation_log_loss"] = [value]
            report(0, {"validation_log_loss": value})
        return FitResult(history=history, iterations=1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if hasattr(self.estimator, "predict_proba"):
            return np.asarray(self.estimator.predict_proba(X), dtype=np.float64)
        scores = np.asarray(self.estimator.decision_function(X), dtype=np.float64)
        # No probabilities (e.g. LinearSVC): a logistic squashing keeps ranking metrics meaningful.
        if scores.ndim == 1:
            return probabilities_from_binary(1.0 / (1.0 + np.exp(-scores)))
        exp = np.exp(scores - scores.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.task == "regression":
            return np.asarray(self.estimator.predict(X), dtype=np.float64)
        return predict_from_proba(self.predict_proba(X))

    def save(self, directory: Path) -> None:
        import joblib

        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.estimator, directory / "estimator.joblib")
        meta = {"family": self.name, "task": self.task, "n_classes": self.n_classes, "seed": self.seed,
                "threads": self.threads, "params": self.params, "estimator": self.estimator_path}
        (directory / "family.json").write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, directory: Path) -> "SklearnFamily":
        import joblib

        meta = json.loads((directory / "family.json").read_text())
        model = cls(meta["task"], meta["params"], meta["n_classes"], meta["seed"], meta["threads"], meta["estimator"])
        model.estimator = joblib.load(directory / "estimator.joblib")
        return model

    @classmethod
    def user_code_hashes(cls, estimator: str | None) -> dict[str, str]:
        digest = user_source_hash(estimator) if estimator else None
        return {estimator: digest} if estimator and digest else {}

    @classmethod
    def default_search_space(cls, task: str, estimator: str | None = None) -> dict[str, dict]:
        # For the default HistGradientBoosting estimator; another estimator keeps the names it accepts.
        space = {
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "max_leaf_nodes": {"type": "int", "low": 8, "high": 128, "log": True},
            "l2_regularization": {"type": "float", "low": 1e-4, "high": 10.0, "log": True},
            "min_samples_leaf": {"type": "int", "low": 5, "high": 100, "log": True},
        }
        if estimator:
            accepted = set(import_estimator(estimator)().get_params(deep=False))
            space = {k: v for k, v in space.items() if k in accepted}
        return space
