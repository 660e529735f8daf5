"""torch_mlp on matrices larger than memory: batches read from the features' Parquet row groups.

The engine's `ParquetBatches` (seeded row-group order, shuffling within a buffer, exact resume through the
checkpointed `EpochCursor`) reads the numeric and code columns; `MLPParquetBatches` turns each row group into
the tensors `TorchMLPFamily` trains on (codes shifted so 0 is unknown/missing, the target scaled), the same
conversion `TorchMLPFamily._inputs` / `_target` apply to an in-memory matrix. The loop, checkpoints, early
stopping and callbacks are the in-memory fit's (`engine/fit.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from trainpipe.models.base import FitContext, FitResult, ReportFn

if TYPE_CHECKING:
    from trainpipe.data.stream_features import MatrixFile


def mlp_batches(model: Any, matrix: MatrixFile) -> Any:
    """`model`: the TorchMLPFamily being fitted (planned: its layout is set). A `ParquetBatches` over `matrix` giving (numeric float32, codes int64, target) per batch."""
    import torch

    from trainpipe.data.stream_features import LABEL
    from trainpipe.engine.batches import ParquetBatches

    lay, task = model.layout, model.task
    names = matrix.features
    cards = torch.as_tensor(lay["cardinalities"], dtype=torch.int64)
    mean, std = lay["y_scale"]

    class MLPParquetBatches(ParquetBatches):
        def _read(self, file: Any, group: int) -> tuple[torch.Tensor, ...]:
            x_num, x_cat, y = super()._read(file, group)
            codes = torch.nan_to_num(x_cat, nan=-1.0).round().to(torch.int64) + 1
            codes = torch.minimum(codes.clamp(min=0), cards) if len(lay["categorical"]) else codes
            target = y.to(torch.int64) if task == "multiclass" else ((y - mean) / std).to(torch.float32)
            return x_num, codes, target

    groups = [([names[i] for i in lay["numeric"]], torch.float32), ([names[i] for i in lay["categorical"]], torch.float32),
              ([LABEL], torch.float64)]
    return MLPParquetBatches(matrix.path, groups)


def fit_mlp_stream(model: Any, train: MatrixFile, val: MatrixFile, *, early_stopping_rounds: int | None,
                   report: ReportFn | None, context: FitContext | None) -> FitResult:
    from trainpipe.engine.fit import fit_torch

    context = context or FitContext()
    # the target's scale (regression) is the one statistic of all training labels the layout needs
    labels = train.labels() if model.task == "regression" else np.zeros(1)
    model._plan(train.n_features, labels, context.categorical)
    model.module, run = fit_torch(model._build, model._loss_fn(), model._metrics_fn(), model.params,
                                  mlp_batches(model, train), mlp_batches(model, val), seed=model.seed,
                                  threads=model.threads, options=context, patience=early_stopping_rounds, report=report)
    model.best_iteration = run.best_epoch
    return FitResult(history=run.history, best_iteration=run.best_epoch, iterations=run.epochs,
                     stopped_early=run.stopped_early)
