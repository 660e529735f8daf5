"""The one entry point both torch families train through: seed, build, checkpoint folder, callbacks, Trainer.

A family supplies what is its own (how to build the module, the loss, the metrics, its batches) and gets the
trained module back on the CPU in eval mode; everything around the loop is decided here once. This is also
the one place where running under torchrun plugs in: the process's `Distributed` (engine/distributed.py, read
from the torchrun environment) starts the process group, gives the rank its threads and random stream, and
is handed to the Trainer, so neither family knows whether it trains in one process or several. Under
torchrun, callbacks (live MLflow epochs, Optuna's report, `training.callbacks`) run on rank 0 only.

The engine does not import `trainpipe.models`: what it reads from the family's `FitContext` is the
`FitOptions` protocol below, which that dataclass satisfies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch

from trainpipe.engine.batches import BatchSource
from trainpipe.engine.callbacks import BudgetStopper, EpochValues, WatchFactory, Watched, WatchSpec, load_callbacks
from trainpipe.engine.checkpoint import CheckpointStore
from trainpipe.engine.config import CheckpointConfig, EngineParams
from trainpipe.engine.distributed import Backend, NothingToTrain, this_process
from trainpipe.engine.loop import LoopResult, LossFn, MetricsFn, Trainer
from trainpipe.engine.state import seed_everything
from trainpipe.monitoring.cost import BudgetStop


class FitOptions(Protocol):
    """What the train stage tells a torch fit beyond the data (trainpipe.models.base.FitContext)."""

    @property
    def checkpoint_dir(self) -> Path | None: ...

    @property
    def checkpoint(self) -> CheckpointConfig | None: ...

    @property
    def config_hash(self) -> str: ...

    @property
    def resume_anyway(self) -> bool: ...

    @property
    def verbose(self) -> bool: ...

    @property
    def on_epoch(self) -> Callable[[int, dict[str, float]], None] | None: ...

    @property
    def callbacks(self) -> Sequence[str]: ...

    @property
    def backend(self) -> Backend: ...

    @property
    def budget(self) -> Callable[[], BudgetStop | None] | None: ...

    @property
    def watch(self) -> WatchFactory | None: ...


def checkpoint_store(options: FitOptions) -> CheckpointStore | None:
    """The run's persistent checkpoint folder, if the caller has one (tuning trials and tests may not)."""
    if options.checkpoint_dir is None:
        return None
    keep = options.checkpoint.keep_last if options.checkpoint is not None else CheckpointConfig().keep_last
    return CheckpointStore(options.checkpoint_dir, options.config_hash, keep)


def assemble_callbacks(options: FitOptions, report: Callable[[int, dict[str, float]], bool] | None,
                       params: EngineParams | None = None) -> list[object]:
    """The run's budget, when it has one, after every step; live epochs to MLflow (never stops), the watcher
    (health checks: the epoch's values and throughput), then pruning (`report` may stop), then the user's
    callbacks."""
    callbacks: list[object] = [BudgetStopper(options.budget)] if options.budget is not None else []
    if options.on_epoch is not None:
        callbacks.append(EpochValues(options.on_epoch, may_stop=False))
    if options.watch is not None and params is not None:
        callbacks.append(Watched(options.watch(WatchSpec(monitor=params.monitor, mode=params.mode))))
    if report is not None:
        callbacks.append(EpochValues(report, may_stop=True))
    return callbacks + load_callbacks(options.callbacks)


def fit_torch(build: Callable[[], torch.nn.Module], loss_fn: LossFn, metrics_fn: MetricsFn | None,
              params: EngineParams, train: BatchSource, val: BatchSource | None, *, seed: int, threads: int,
              options: FitOptions, patience: int | None,
              report: Callable[[int, dict[str, float]], bool] | None = None,
              evaluator: Callable[[], dict[str, float]] | None = None) -> tuple[torch.nn.Module, LoopResult]:
    """Seed python/numpy/torch, then `build()` the module (its initial weights follow the seed), and train it.

    `patience`: epochs without improvement of `params.monitor` before stopping (None: every epoch, and the
    result's best_epoch is None). Returns the trained module (CPU, eval mode; with patience, the best
    epoch's weights) and the loop's result.
    """
    dist = this_process()  # one process unless torchrun started this one
    callbacks = assemble_callbacks(options, report, params)  # user classes imported before any work is done
    seed_everything(seed)
    module = build()  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    dist.seed(seed)  # ranks other than 0: their own dropout masks and random negatives
    dist.start(options.backend, dist.device(params.device))  # kept for the process's life (engine/distributed.py)
    if not dist.go(True):  # rank 0 ended without training: nothing for this rank to do
        raise NothingToTrain("rank 0 trains nothing in this job")
    trainer = Trainer(module, loss_fn, metrics_fn, params, seed=seed, threads=dist.threads(threads), patience=patience,
                      store=checkpoint_store(options), checkpoint=options.checkpoint,
                      resume_anyway=options.resume_anyway, callbacks=callbacks if dist.is_main else [],
                      verbose=options.verbose and dist.is_main, evaluator=evaluator, dist=dist)
    result = trainer.fit(train, val)
    if not patience:
        result.best_epoch = None
    return trainer.module.to("cpu").eval(), result
