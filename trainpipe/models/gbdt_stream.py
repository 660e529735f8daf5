"""XGBoost on matrices larger than memory: its external-memory `DataIter` over the features' Parquet row groups.

`ExtMemQuantileDMatrix` reads the iterator once to sketch the quantiles and writes the quantised pages to a cache
folder on disk; each boosting round then streams those pages (xgboost's own external-memory design), so memory is
about one page plus the model, not the matrix. The validation matrix shares the training quantiles (`ref`).
Training is otherwise the in-memory `XGBoostFamily.fit`: same parameters, callbacks, early stopping, metric names.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainpipe.errors import ModelError
from trainpipe.models.base import FitContext, FitResult, ReportFn

if TYPE_CHECKING:
    from trainpipe.data.stream_features import MatrixFile
    from trainpipe.models.gbdt import XGBoostFamily


def parquet_iter(xgb: Any, matrix: MatrixFile, cache_prefix: str) -> Any:
    """An `xgboost.DataIter` yielding the matrix one row group at a time (xgboost is imported late: built here)."""

    class ParquetMatrixIter(xgb.DataIter):
        def __init__(self) -> None:
            super().__init__(cache_prefix=cache_prefix, release_data=True)
            self._chunks: Any = None

        def next(self, input_data: Any) -> bool:
            if self._chunks is None:
                self._chunks = matrix.chunks()
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            input_data(data=chunk[0], label=chunk[1])
            return True

        def reset(self) -> None:
            self._chunks = None

    return ParquetMatrixIter()


def fit_xgboost_stream(model: XGBoostFamily, train: MatrixFile, val: MatrixFile, *,
                       early_stopping_rounds: int | None, report: ReportFn | None, train_metrics: bool,
                       context: FitContext | None) -> FitResult:
    from trainpipe.models.gbdt import RoundProgress, _fit_result, _import, _on_round, _XGBReporter

    xgb = _import("xgboost", "xgboost-cpu")
    params = model._native_params()
    if params.get("tree_method", "hist") != "hist":
        raise ModelError("model.params.tree_method: streamed data trains with tree_method hist (xgboost's external "
                         "memory); remove it or set data.streaming: off", key="model.params.tree_method")
    rounds = int(model.params["n_estimators"])
    where = context.checkpoint_dir.parent if context is not None and context.checkpoint_dir is not None else None
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xgb-pages-", dir=where) as cache:
        max_bin = params.get("max_bin")
        dtrain = xgb.ExtMemQuantileDMatrix(parquet_iter(xgb, train, str(Path(cache) / "train")), max_bin=max_bin,
                                           nthread=model.threads)
        dval = xgb.ExtMemQuantileDMatrix(parquet_iter(xgb, val, str(Path(cache) / "validation")), ref=dtrain,
                                         max_bin=max_bin, nthread=model.threads)
        log: dict = {}
        progress = RoundProgress(True, model.name, rounds) if context is not None and context.verbose else None
        on_round = _on_round(report, progress)
        callbacks = [] if on_round is None else [_XGBReporter(xgb, on_round)]
        if early_stopping_rounds:
            callbacks.append(xgb.callback.EarlyStopping(rounds=early_stopping_rounds, data_name="validation",
                                                        save_best=True))
        try:
            model.booster = xgb.train(params, dtrain, num_boost_round=rounds,
                                      evals=([(dtrain, "train")] if train_metrics else []) + [(dval, "validation")],
                                      evals_result=log, verbose_eval=False, callbacks=callbacks)
        except xgb.core.XGBoostError as exc:
            raise ModelError(f"model.params: xgboost rejected the parameters: {str(exc).splitlines()[0]}",
                             key="model.params") from exc
        finally:
            if progress is not None:
                progress.close()
    model.best_iteration = getattr(model.booster, "best_iteration", None) if early_stopping_rounds else None
    return _fit_result(log, model.best_iteration, rounds)
