"""Gradient-boosted trees: XGBoost and LightGBM through their native training APIs.

Native APIs (not the sklearn wrappers) give per-round callbacks for reporting/pruning and let
us pass NaN and float32 matrices without copies.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trainpipe.errors import MissingDependency, ModelError
from trainpipe.models.base import (
    FitContext,
    FitResult,
    PreprocessingNeeds,
    ReportFn,
    ScaffoldDefaults,
    predict_from_proba,
    probabilities_from_binary,
)

from trainpipe.models.gbdt_rounds import fit_result, metric_key, per_round, round_progress, round_watch, watch_validation

TREE_NEEDS = PreprocessingNeeds(tree_model=True, handles_missing=True, native_categoricals="available")


def native_columns(context: FitContext | None) -> list[int]:
    """Matrix columns that hold category codes to split on as categories (features.categorical.encoding native)."""
    categorical = context.categorical if context is not None else None
    return list(categorical["columns"]) if categorical and categorical.get("native") else []


def _import(name: str, extra: str) -> Any:
    try:
        return __import__(name)
    except ImportError as exc:
        raise MissingDependency(f"model.type: {name} is not installed; pip install 'trainpipe[{extra}]'",
                                key="model.type") from exc


# Set from the top-level `seed` and `training.threads`, so one config value means one thing.
RESERVED = {"seed": "seed", "random_state": "seed", "nthread": "training.threads", "n_jobs": "training.threads",
            "num_threads": "training.threads", "num_class": "the data's labels", "num_boost_round": "model.params.n_estimators",
            "num_iterations": "model.params.n_estimators"}


def _check_common(params: dict[str, Any]) -> None:
    rounds = params.get("n_estimators", 1)
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ModelError(f"model.params.n_estimators: expected a positive integer, got {rounds!r}",
                         key="model.params.n_estimators")
    for name in params:
        if name in RESERVED:
            raise ModelError(f"model.params.{name}: set by trainpipe from {RESERVED[name]}; remove it here",
                             key=f"model.params.{name}")


def _unknown(name: str, known: set[str], family: str) -> ModelError:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ModelError(f"model.params.{name}: {family} has no parameter {name!r}{hint}", key=f"model.params.{name}")


def _config_keys(doc: Any, found: set[str]) -> set[str]:
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.add(key)
            _config_keys(value, found)
    elif isinstance(doc, list):
        for value in doc:
            _config_keys(value, found)
    return found


# Names xgboost accepts but stores under another name in its saved config.
XGB_ALIASES = {"learning_rate": "eta", "reg_lambda": "lambda", "reg_alpha": "alpha", "min_split_loss": "gamma",
               "eval_metric": "metrics", "random_state": "seed"}


def check_xgboost_params(params: dict[str, Any], task: str) -> None:
    """xgboost ignores unknown parameters with only a log line: train one round on four rows and
    compare the names against the parameters the booster actually recorded."""
    xgb = _import("xgboost", "xgboost-cpu")
    native = {k: v for k, v in params.items() if k != "n_estimators"}
    data = xgb.DMatrix(np.array([[0.0], [1.0], [0.0], [1.0]], dtype=np.float32), label=np.array([0, 1, 0, 1]))
    try:
        booster = xgb.train({**native, "objective": "binary:logistic", "verbosity": 0, "nthread": 1}, data, 1)
    except xgb.core.XGBoostError as exc:
        raise ModelError(f"model.params: xgboost rejected the parameters: {str(exc).strip().splitlines()[0]}",
                         key="model.params") from exc
    known = _config_keys(json.loads(booster.save_config()), set())
    for name in native:
        if XGB_ALIASES.get(name, name) not in known:
            raise _unknown(name, known | set(XGB_ALIASES), "xgboost")


def check_lightgbm_params(params: dict[str, Any]) -> None:
    """LightGBM warns `Unknown parameter` and carries on: check names against its alias table."""
    lgb = _import("lightgbm", "lightgbm")
    from lightgbm.basic import _ConfigAliases

    aliases = _ConfigAliases._get_all_param_aliases()  # {name: [name, *aliases]} from the C library itself
    known = set(aliases) | {a for names in aliases.values() for a in names}
    for name in params:
        if name != "n_estimators" and name not in known:
            raise _unknown(name, known, "lightgbm")
    del lgb


def _dask(context: FitContext | None, report: ReportFn | None) -> Any:
    """`training.distributed.dask` when this fit goes to a Dask cluster (models/gbdt_dask.py), else None."""
    dask = context.distributed.dask if context is not None and context.distributed is not None else None
    if dask is not None and report is not None:  # tuning trials fit in one process (they pass no context)
        raise ModelError("training.distributed.dask: per-round reports (tuning's pruning) need a one-process fit",
                         key="training.distributed.dask")
    return dask


def _proba(task: str, raw: Any) -> np.ndarray:
    return probabilities_from_binary(raw) if task == "binary" else np.asarray(raw, dtype=np.float64)


def _predict(task: str, raw: Any) -> np.ndarray:
    return np.asarray(raw, dtype=np.float64) if task == "regression" else predict_from_proba(_proba(task, raw))


def _write_meta(model: Any, directory: Path) -> None:
    meta = {"family": model.name, "task": model.task, "n_classes": model.n_classes, "seed": model.seed,
            "threads": model.threads, "params": model.params, "best_iteration": model.best_iteration}
    (directory / "family.json").write_text(json.dumps(meta, indent=2, default=str))


def _from_meta(cls: Any, directory: Path) -> Any:
    meta = json.loads((directory / "family.json").read_text())
    model = cls(meta["task"], meta["params"], meta["n_classes"], meta["seed"], meta["threads"])
    model.best_iteration = meta.get("best_iteration")
    return model


class XGBoostFamily:
    name = "xgboost"
    # native categoricals by default: lower test log loss/RMSE than ordinal codes on average over the real tables
    # of benchmarks/bench_categoricals.py (LightGBM's were not: ordinal stays its default)
    needs = PreprocessingNeeds(tree_model=True, handles_missing=True, native_categoricals="default")
    fit_releases_gil = True
    iteration_param = "n_estimators"
    requirements = (("xgboost", "xgboost-cpu"),)
    scaffold = ScaffoldDefaults(params={"n_estimators": (500, "most rounds: early stopping usually ends sooner")},
                                early_stopping_rounds=(50, "rounds without a better validation loss"))
    DEFAULTS = {"n_estimators": 500, "learning_rate": 0.1, "max_depth": 6, "tree_method": "hist"}
    OBJECTIVES = {"binary": ("binary:logistic", "logloss"), "multiclass": ("multi:softprob", "mlogloss"),
                  "regression": ("reg:squarederror", "rmse")}

    def __init__(self, task: str, params: dict[str, Any], n_classes: int, seed: int, threads: int,
                 estimator: str | None = None):
        self.task, self.n_classes, self.seed, self.threads = task, n_classes, seed, threads
        self.params = {**self.DEFAULTS, **params}
        self.booster: Any = None
        self.best_iteration: int | None = None

    @classmethod
    def check_config(cls, params: dict[str, Any], estimator: str | None, task: str) -> None:
        _check_common(params)
        check_xgboost_params(params, task)

    def _native_params(self) -> dict[str, Any]:
        params = {k: v for k, v in self.params.items() if k != "n_estimators"}
        objective, metric = self.OBJECTIVES[self.task]
        params.setdefault("objective", objective)
        params.setdefault("eval_metric", metric)
        params.update(seed=self.seed, nthread=self.threads, verbosity=0)
        if self.task == "multiclass":
            params["num_class"] = self.n_classes
        return params

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
            early_stopping_rounds: int | None = None, report: ReportFn | None = None,
            train_metrics: bool = False, context: FitContext | None = None) -> FitResult:
        """context: `verbose` (per-round progress on a terminal), `watch` (the health checks, per round), `budget`
        and `distributed.dask` (train on a Dask cluster)."""
        if (dask := _dask(context, report)) is not None:
            from trainpipe.models import gbdt_dask

            rounds = int(self.params["n_estimators"])
            self.booster, rounds_log = gbdt_dask.fit_xgboost(self._native_params(), rounds, X, y, X_val, y_val,
                                                             early_stopping_rounds=early_stopping_rounds,
                                                             train_metrics=train_metrics, config=dask)
            self.booster.set_param({"nthread": self.threads})  # evaluate and predict run here, in one process
            self.best_iteration = getattr(self.booster, "best_iteration", None) if early_stopping_rounds else None
            return fit_result(rounds_log, self.best_iteration, self.booster.num_boosted_rounds(), rounds)
        xgb = _import("xgboost", "xgboost-cpu")
        columns = native_columns(context)
        # The booster keeps the feature types in its saved model: predict needs nothing more (inplace_predict).
        types = {"feature_types": ["c" if i in columns else "q" for i in range(X.shape[1])],
                 "enable_categorical": True} if columns else {}
        dtrain = xgb.DMatrix(X, label=y, nthread=self.threads, **types)
        return self._fit_matrices(xgb, dtrain, lambda: xgb.DMatrix(X_val, label=y_val, nthread=self.threads, **types),
                                  early_stopping_rounds, report, train_metrics, context)

    def _fit_matrices(self, xgb: Any, dtrain: Any, dval: Callable[[], Any], early_stopping_rounds: int | None,
                      report: ReportFn | None, train_metrics: bool, context: FitContext | None) -> FitResult:
        """Boost on xgboost matrices: in-memory DMatrix (fit) or external-memory pages (fit_stream); `dval` makes
        the validation matrix, built only when something reads it per round."""
        params = self._native_params()
        log: dict = {}
        rounds = int(self.params["n_estimators"])
        progress = round_progress(context, self.name, rounds)
        stops_on = params["eval_metric"] if isinstance(params["eval_metric"], str) else params["eval_metric"][-1]
        watch = round_watch(context, stops_on, train_metrics, int(dtrain.num_row()))  # xgboost stops on the last metric
        on_round = per_round(report, progress, watch, context.budget if context is not None else None)
        evals = [(dtrain, "train")] if train_metrics else []
        if watch_validation(early_stopping_rounds, report is not None or progress is not None, train_metrics):
            evals.append((dval(), "validation"))
        callbacks = [] if on_round is None else [_XGBReporter(xgb, on_round)]
        if early_stopping_rounds:
            callbacks.append(xgb.callback.EarlyStopping(rounds=early_stopping_rounds, data_name="validation",
                                                        save_best=True))
        try:
            self.booster = xgb.train(params, dtrain, num_boost_round=rounds,
                                     evals=evals, evals_result=log,
                                     verbose_eval=False, callbacks=callbacks)
        except xgb.core.XGBoostError as exc:
            raise ModelError(f"model.params: xgboost rejected the parameters: {str(exc).splitlines()[0]}",
                             key="model.params") from exc
        finally:
            if progress is not None:
                progress.close()
        self.best_iteration = getattr(self.booster, "best_iteration", None) if early_stopping_rounds else None
        return fit_result(log, self.best_iteration, self.booster.num_boosted_rounds(), rounds)

    def _raw(self, X: np.ndarray) -> Any:
        # inplace_predict reads the array directly: no DMatrix built per call (it was most of a small batch's time).
        # With early stopping and save_best the booster holds exactly the best rounds, so every tree is used.
        return self.booster.inplace_predict(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return _proba(self.task, self._raw(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return _predict(self.task, self._raw(X))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / "model.ubj"))
        _write_meta(self, directory)

    @classmethod
    def load(cls, directory: Path) -> "XGBoostFamily":
        xgb = _import("xgboost", "xgboost-cpu")
        model = _from_meta(cls, directory)
        model.booster = xgb.Booster()
        model.booster.load_model(str(directory / "model.ubj"))
        model.booster.set_param({"nthread": model.threads})
        return model

    @classmethod
    def user_code_hashes(cls, estimator: str | None) -> dict[str, str]:
        return {}

    @classmethod
    def default_search_space(cls, task: str, estimator: str | None = None) -> dict[str, dict]:
        return {
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "max_depth": {"type": "int", "low": 3, "high": 10},
            "min_child_weight": {"type": "float", "low": 1e-2, "high": 10.0, "log": True},
            "subsample": {"type": "float", "low": 0.5, "high": 1.0},
            "colsample_bytree": {"type": "float", "low": 0.5, "high": 1.0},
            "reg_lambda": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
        }

    def fit_stream(self, train: Any, val: Any, *, early_stopping_rounds: int | None = None,
                   report: ReportFn | None = None, train_metrics: bool = False,
                   context: FitContext | None = None) -> FitResult:
        """Matrices larger than memory (data.streaming): xgboost's external-memory pages built from the features'
        Parquet row groups (models/gbdt_stream.py), then the same boosting as `fit`."""
        from trainpipe.models.gbdt_stream import external_memory

        xgb = _import("xgboost", "xgboost-cpu")
        with external_memory(xgb, train, val, self._native_params(), self.threads, context) as (dtrain, dval):
            return self._fit_matrices(xgb, dtrain, lambda: dval, early_stopping_rounds, report, train_metrics, context)


def _xgb_callback_base(xgb: Any) -> Any:
    return xgb.callback.TrainingCallback


class _XGBReporter:
    """Adapts xgboost's per-round callback to a ReportFn (built lazily: xgboost is imported late)."""

    def __new__(cls, xgb: Any, report: ReportFn) -> Any:
        base: Any = _xgb_callback_base(xgb)

        class Reporter(base):
            def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
                values = {metric_key(split, metric): float(vals[-1]) for split, metrics in evals_log.items()
                          for metric, vals in metrics.items()}
                return bool(report(epoch, values))

        return Reporter()


class LightGBMFamily:
    name = "lightgbm"
    needs = TREE_NEEDS
    fit_releases_gil = True
    iteration_param = "n_estimators"
    requirements = ("lightgbm",)
    scaffold = ScaffoldDefaults(params={"n_estimators": (500, "most rounds: early stopping usually ends sooner")},
                                early_stopping_rounds=(50, "rounds without a better validation loss"))
    DEFAULTS = {"n_estimators": 500, "learning_rate": 0.05, "num_leaves": 31}
    OBJECTIVES = {"binary": ("binary", "binary_logloss"), "multiclass": ("multiclass", "multi_logloss"),
                  "regression": ("regression", "rmse")}

    def __init__(self, task: str, params: dict[str, Any], n_classes: int, seed: int, threads: int,
                 estimator: str | None = None):
        self.task, self.n_classes, self.seed, self.threads = task, n_classes, seed, threads
        self.params = {**self.DEFAULTS, **params}
        self.booster: Any = None
        self.best_iteration: int | None = None

    @classmethod
    def check_config(cls, params: dict[str, Any], estimator: str | None, task: str) -> None:
        _check_common(params)
        check_lightgbm_params(params)

    def _native_params(self) -> dict[str, Any]:
        params = {k: v for k, v in self.params.items() if k != "n_estimators"}
        objective, metric = self.OBJECTIVES[self.task]
        params.setdefault("objective", objective)
        params.setdefault("metric", metric)
        # Deterministic: fixed seed, and row-wise histograms chosen up front instead of LightGBM's
        # start-up timing probe (which can pick differently run to run; row-wise was faster here).
        params.update(seed=self.seed, num_threads=self.threads, verbose=-1, deterministic=True)
        params.setdefault("force_row_wise", True)
        if self.task == "multiclass":
            params["num_class"] = self.n_classes
        return params

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
            early_stopping_rounds: int | None = None, report: ReportFn | None = None,
            train_metrics: bool = False, context: FitContext | None = None) -> FitResult:
        """context: `verbose` (per-round progress on a terminal), `watch` (the health checks, per round), `budget`
        and `distributed.dask` (train on a Dask cluster)."""
        if (dask := _dask(context, report)) is not None:
            from trainpipe.models import gbdt_dask

            rounds = int(self.params["n_estimators"])
            self.booster, rounds_log = gbdt_dask.fit_lightgbm(self._native_params(), rounds, self.task, X, y, X_val,
                                                              y_val, early_stopping_rounds=early_stopping_rounds,
                                                              config=dask)
            best = self.booster.best_iteration - 1 if early_stopping_rounds and self.booster.best_iteration else None
            self.best_iteration = best
            return fit_result(rounds_log, best, self.booster.current_iteration(), rounds)
        lgb = _import("lightgbm", "lightgbm")
        params = self._native_params()
        # The saved model records the categorical columns: predict needs nothing more.
        train = lgb.Dataset(X, label=y, free_raw_data=True, categorical_feature=native_columns(context) or "auto")
        log: dict = {}
        rounds = int(self.params["n_estimators"])
        progress = round_progress(context, self.name, rounds)
        watch = round_watch(context, params["metric"], train_metrics, len(y))
        on_round = per_round(report, progress, watch, context.budget if context is not None else None)
        valid_sets, valid_names = ([train], ["train"]) if train_metrics else ([], [])
        if watch_validation(early_stopping_rounds, report is not None or progress is not None, train_metrics):
            valid_sets.append(lgb.Dataset(X_val, label=y_val, reference=train))
            valid_names.append("validation")
        callbacks = [lgb.record_evaluation(log)]
        if early_stopping_rounds:
            callbacks.append(lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False))
        if on_round is not None:
            def _report(env: Any) -> None:
                values = {metric_key(name, metric): float(value) for name, metric, value, _ in env.evaluation_result_list}
                if on_round(env.iteration, values):
                    raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)
            callbacks.append(_report)
        try:
            self.booster = lgb.train(params, train, num_boost_round=rounds,
                                     valid_sets=valid_sets, valid_names=valid_names, callbacks=callbacks)
        except lgb.basic.LightGBMError as exc:
            raise ModelError(f"model.params: lightgbm rejected the parameters: {str(exc).splitlines()[0]}",
                             key="model.params") from exc
        finally:
            if progress is not None:
                progress.close()
        best = self.booster.best_iteration - 1 if early_stopping_rounds and self.booster.best_iteration else None
        self.best_iteration = best
        return fit_result(log, best, self.booster.current_iteration(), rounds)

    def _raw(self, X: np.ndarray) -> Any:
        iteration = None if self.best_iteration is None else self.best_iteration + 1
        return self.booster.predict(X, num_iteration=iteration, num_threads=self.threads)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return _proba(self.task, self._raw(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return _predict(self.task, self._raw(X))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / "model.txt"))
        _write_meta(self, directory)

    @classmethod
    def load(cls, directory: Path) -> "LightGBMFamily":
        lgb = _import("lightgbm", "lightgbm")
        model = _from_meta(cls, directory)
        model.booster = lgb.Booster(model_file=str(directory / "model.txt"))
        return model

    @classmethod
    def user_code_hashes(cls, estimator: str | None) -> dict[str, str]:
        return {}

    @classmethod
    def default_search_space(cls, task: str, estimator: str | None = None) -> dict[str, dict]:
        return {
            "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "num_leaves": {"type": "int", "low": 8, "high": 256, "log": True},
            "min_child_samples": {"type": "int", "low": 5, "high": 100},
            "feature_fraction": {"type": "float", "low": 0.5, "high": 1.0},
            "bagging_fraction": {"type": "float", "low": 0.5, "high": 1.0},
            "bagging_freq": {"type": "int", "low": 1, "high": 5},  # 0 (LightGBM's default) ignores bagging_fraction
            "lambda_l2": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
        }
