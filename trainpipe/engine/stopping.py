"""Early stopping: the best monitored value so far, its epoch, its checkpoint and (with patience) its weights."""

from __future__ import annotations

from typing import Any, Literal

import torch

from trainpipe.engine.state import AttributeState


class EarlyStopping(AttributeState):
    """Tracks the best epoch always (for the result and the kept checkpoint); stops only with a `patience`.

    `best_step` is the optimizer step of the checkpoint written at the end of the best epoch, which the
    checkpoint folder keeps besides the newest ones; None until such a checkpoint exists.
    """

    STATE = ("best", "best_epoch", "best_step", "bad_epochs", "best_weights")

    def __init__(self, mode: Literal["min", "max"], patience: int | None) -> None:
        self.mode, self.patience = mode, patience
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_step: int | None = None
        self.bad_epochs = 0
        self.best_weights: dict[str, Any] | None = None

    def update(self, value: float, epoch: int, module: torch.nn.Module) -> bool:
        """Record an epoch's monitored value; True when it is the best so far."""
        improved = self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            if self.patience:
                self.best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return bool(self.patience and self.bad_epochs >= self.patience)

    def restore_best(self, module: torch.nn.Module) -> None:
        """Load the best epoch's weights (with patience), so the model predicts as it did at its best."""
        if self.patience and self.best_weights is not None:
            module.load_state_dict(self.best_weights)
