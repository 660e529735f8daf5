"""Training callbacks: small objects whose optional hooks the loop calls (Lightning's idea, three hooks).

A callback is any object with some of these methods; subclassing `Callback` is optional:

- `on_step_end(trainer)`: after each optimizer step (and the step's checkpoint, if one was due);
- `on_epoch_end(trainer, values) -> bool | None`: after validation, with the epoch's history values; a true
  return asks the loop to stop after this epoch (pruning);
- `on_checkpoint(trainer, path)`: after a checkpoint file was written.

`trainer` exposes `epoch` (0-based; during `on_epoch_end` the epoch that just ended), `step` (optimizer steps so
far), `history`, `module`, `last_checkpoint` and `preempt_requested` (SIGTERM arrived). Hooks observe; they
must not change the weights or draw from the global random generators, or a resumed run is no longer
bit-identical to an uninterrupted one.

Users name theirs in `training.callbacks` as import paths (`package.module:Class`), constructed without
arguments in the training process; `load_callbacks` does that with one-line errors naming the key.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from trainpipe.errors import BudgetExceeded, ConfigError
from trainpipe.monitoring.cost import BudgetStop


class Trainer(Protocol):
    """What a hook may read of the loop (engine/loop.py's Trainer), declared here so that this module, which the
    loop imports, does not import the loop back."""

    module: Any
    last_checkpoint: str | None
    preempt_requested: bool

    @property
    def epoch(self) -> int: ...

    @property
    def step(self) -> int: ...

    @property
    def history(self) -> dict[str, list[float]]: ...

    def save(self) -> None: ...

    @property
    def rows_per_s(self) -> float | None:
        """Training rows per second of the epoch that just ended (None before the first)."""

HOOKS = ("on_step_end", "on_epoch_end", "on_checkpoint")
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[:.][A-Za-z_]\w*$")


class Callback:
    """The hooks with their signatures, doing nothing: subclass and override the ones you need."""

    def on_step_end(self, trainer: Trainer) -> None:
        """After an optimizer step."""

    def on_epoch_end(self, trainer: Trainer, values: dict[str, float]) -> bool | None:
        """After validation; return True to stop training after this epoch."""
        return None

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After a checkpoint file was written."""


class EpochValues(Callback):
    """A plain function of (epoch, values) as an epoch-end hook: pruning (`report`, may stop) or live logging."""

    def __init__(self, fn: Callable[[int, dict[str, float]], object], may_stop: bool) -> None:
        self.fn, self.may_stop = fn, may_stop

    def on_epoch_end(self, trainer: Trainer, values: dict[str, float]) -> bool:
        answer = self.fn(trainer.epoch, values)
        return bool(answer) and self.may_stop


class BudgetStopper(Callback):
    """Stops training when the run's `budget` is spent: a checkpoint at this step boundary first (nothing is
    lost), then BudgetExceeded with one line naming the budget key. `poll` is BudgetChecker.poll (µs a call)."""

    def __init__(self, poll: Callable[[], BudgetStop | None]) -> None:
        self.poll = poll

    def on_step_end(self, trainer: Trainer) -> None:
        stop = self.poll()
        if stop is None:
            return
        trainer.save()  # a no-op without a checkpoint folder (tuning trials, tests)
        where = (f"after a checkpoint ({trainer.last_checkpoint}); `--resume` continues from it"
                 if trainer.last_checkpoint else "(no checkpoint folder: nothing to resume)")
        raise BudgetExceeded(f"{stop.message}: training stopped at epoch {trainer.epoch + 1} step {trainer.step} "
                             f"{where}", key=stop.key)


@dataclass(frozen=True)
class WatchSpec:
    """What a per-iteration watcher (the health checks) must know of a fit: the value early stopping follows and
    its direction, the training loss and gradient-norm keys, and whether iterations are epochs or rounds."""

    monitor: str
    mode: Literal["min", "max"] = "min"
    loss: str = "train_loss"
    grad_norm: str = "train_grad_norm"
    unit: Literal["epoch", "round"] = "epoch"


class IterationWatch(Protocol):
    """Sees every epoch or boosting round: its values and the training throughput (monitoring.health's
    HealthMonitor is one). It observes only: it cannot stop training."""

    def observe(self, epoch: int, values: Mapping[str, float], rows_per_s: float | None = None) -> object: ...


# Made by the caller for one fit from what only the fit knows (WatchSpec); None: nothing watches.
WatchFactory = Callable[[WatchSpec], IterationWatch]


class Watched(Callback):
    """An IterationWatch as an epoch-end hook of the torch loop: the epoch's values and its rows per second."""

    def __init__(self, watch: IterationWatch) -> None:
        self.watch = watch

    def on_epoch_end(self, trainer: Trainer, values: dict[str, float]) -> None:
        self.watch.observe(trainer.epoch, values, trainer.rows_per_s)


def hooks(callbacks: Sequence[object], name: str) -> list[Callable[..., object]]:
    """The bound `name` methods of the callbacks that have one, in order."""
    found = (getattr(cb, name, None) for cb in callbacks)
    return [hook for hook in found if callable(hook)]


def load_callbacks(paths: Sequence[str], key: str = "training.callbacks") -> list[object]:
    """Import and construct each `package.module:Class` (or `package.module.Class`); one line per mistake."""
    loaded = []
    for i, path in enumerate(paths):
        where = f"{key}[{i}]"
        if not IMPORT_PATH.match(path):
            raise ConfigError(f"{where}: {path!r} is not an import path like mypackage.callbacks:MyCallback", key=where)
        module_name, _, name = path.rpartition(":") if ":" in path else path.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"{where}: cannot import module {module_name!r} ({exc}); is it on PYTHONPATH?",
                              key=where) from exc
        cls = getattr(module, name, None)
        if cls is None:
            raise ConfigError(f"{where}: module {module_name!r} has no attribute {name!r}", key=where)
        try:
            callback = cls()
        except Exception as exc:
            raise ConfigError(f"{where}: {path} could not be constructed without arguments: {exc}", key=where) from exc
        if not any(callable(getattr(callback, hook, None)) for hook in HOOKS):
            raise ConfigError(f"{where}: {path} has none of the callback methods {', '.join(HOOKS)}", key=where)
        loaded.append(callback)
    return loaded
