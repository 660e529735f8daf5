"""Tuning progress on a terminal: trials finished of `n_trials` (every worker's), the best value so far and the
ETA, as one live line on stderr (engine/progress.py LiveLine); nothing on a pipe or with --json."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from trainpipe.engine.progress import LiveLine
from trainpipe.tuning import study as studies

if TYPE_CHECKING:
    from trainpipe.tuning.config import TuningConfig


class TrialProgress:
    """An Optuna callback for the stage's own worker. It reads the counts from the storage (one COUNT query and
    the best trial), at most ~5 times a second and only when the line is shown, so it costs nothing otherwise."""

    def __init__(self, enabled: bool, study: Any, tuning: TuningConfig, metric: str):
        self.metric = metric
        self.deadline = time.monotonic() + tuning.timeout if tuning.timeout else None
        self.line = LiveLine(enabled, "tuning trial", tuning.n_trials)
        if self.line.due():
            self._draw(study)  # a resumed study starts at its finished count

    def __call__(self, study: Any, trial: Any) -> None:
        if self.line.due():
            self._draw(study)

    def _draw(self, study: Any) -> None:
        parts = []
        best = best_trial(study)
        if best is not None:
            parts.append(f"best {self.metric} {best.values[0]:.5g} (trial {best.number})")
        if self.deadline is not None:
            parts.append(f"{max(0.0, self.deadline - time.monotonic()):.0f}s of tuning.timeout left")
        self.line.update(studies.finished(study), "  ".join(parts))

    def close(self) -> None:
        self.line.close()


def best_trial(study: Any) -> Any:
    """The best finished trial from the storage (one query), None before the first; multi-objective: None
    (a Pareto front has no single best)."""
    if len(study.directions) > 1:
        return None
    try:
        return study._storage.get_best_trial(study._study_id)
    except ValueError:  # no completed trial yet
        return None
