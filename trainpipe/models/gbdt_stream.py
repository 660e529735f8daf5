"""XGBoost on matrices larger than memory: its external-memory `DataIter` over the features' Parquet row groups.

`ExtMemQuantileDMatrix` reads the iterator once to sketch the quantiles and writes the quantised pages to a cache
folder on disk; each boosting round then streams those pages (xgboost's own external-memory design), so memory is
about one page plus the model, not the matrix. The validation matrix shares the training quantiles (`ref`).
Boosting itself is `XGBoostFamily._fit_matrices`, the in-memory fit's: same parameters, callbacks, early stopping.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainpipe.errors import ModelError
from trainpipe.models.base import FitContext

if TYPE_CHECKING:
    from trainpipe.data.stream_features import MatrixFile


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


@contextmanager
def external_memory(xgb: Any, train: MatrixFile, val: MatrixFile, params: dict[str, Any], threads: int,
                    context: FitContext | None) -> Iterator[tuple[Any, Any]]:
    """(train, validation) external-memory matrices; their page cache lives in a temporary folder next to the run's
    checkpoints (or the system's temporary folder) and is removed afterwards."""
    if params.get("tree_method", "hist") != "hist":
        raise ModelError("model.params.tree_method: streamed data trains with tree_method hist (xgboost's external "
                         "memory); remove it or set data.streaming: off", key="model.params.tree_method")
    where = context.checkpoint_dir.parent if context is not None and context.checkpoint_dir is not None else None
    if where is not None:
        where.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xgb-pages-", dir=where) as cache:
        max_bin = params.get("max_bin")
        dtrain = xgb.ExtMemQuantileDMatrix(parquet_iter(xgb, train, str(Path(cache) / "train")), max_bin=max_bin,
                                           nthread=threads)
        dval = xgb.ExtMemQuantileDMatrix(parquet_iter(xgb, val, str(Path(cache) / "validation")), ref=dtrain,
                                         max_bin=max_bin, nthread=threads)
        yield dtrain, dval
        del dtrain, dval  # xgboost's page files are closed before the folder goes
