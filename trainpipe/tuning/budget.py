"""Budgets that end a study cleanly between trials, and the record of which one did.

Counts and costs are read from the storage, so they hold across workers, machines and reruns:
`n_trials` is the study's total of finished (complete + pruned) trials and `max_cost` its total spend.
With N workers a study can end up to N-1 trials over `n_trials` (trials already running are finished).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainpipe.errors import ModelError
from trainpipe.tuning.objective import outcome
from trainpipe.tuning.study import finished, total_cost

if TYPE_CHECKING:
    from trainpipe.tuning.config import TuningConfig

MAX_CONSECUTIVE_FAILURES = 5


@dataclass
class Budget:
    n_trials: int
    timeout: float | None = None
    max_cost: float | None = None
    started: float = field(default_factory=time.perf_counter)
    stopped_by: str | None = None  # n_trials | timeout | max_cost | grid
    failures: list[str] = field(default_factory=list)  # messages of this worker's consecutive failed trials
    ran: int = 0  # trials this worker finished

    def remaining(self, study: Any) -> int:
        return max(self.n_trials - finished(study), 0)

    def callback(self, study: Any, trial: Any) -> None:
        """After each trial: stop the study when a budget is spent; stop on repeated failures."""
        self.ran += 1
        if trial.state.name == "FAIL":
            self.failures.append(str(outcome(trial).get("error") or "see the worker's log"))
            if len(self.failures) >= MAX_CONSECUTIVE_FAILURES:
                self.stopped_by = "failures"
                study.stop()
            return
        self.failures.clear()
        if finished(study) >= self.n_trials:
            self.stopped_by = "n_trials"
            study.stop()
        elif self.max_cost is not None and total_cost(study) >= self.max_cost:
            self.stopped_by = "max_cost"
            study.stop()

    def conclude(self, study: Any) -> str:
        """Why this worker stopped, once study.optimize has returned."""
        if self.stopped_by == "failures":
            raise ModelError(f"tuning: {MAX_CONSECUTIVE_FAILURES} trials in a row failed; the last: {self.failures[-1]}",
                             key="tuning")
        if self.stopped_by is None:
            if self.timeout is not None and time.perf_counter() - self.started >= self.timeout:
                self.stopped_by = "timeout"
            elif finished(study) >= self.n_trials:
                self.stopped_by = "n_trials"
            elif self.max_cost is not None and total_cost(study) >= self.max_cost:
                self.stopped_by = "max_cost"
            else:
                self.stopped_by = "search space exhausted"  # the grid sampler stops the study itself
        return self.stopped_by


def describe(stopped_by: str, tuning: TuningConfig, spent_usd: float, finished_trials: int) -> str:
    """The line the user reads: which budget ended the study."""
    if stopped_by == "n_trials":
        return f"reached tuning.n_trials: {finished_trials} of {tuning.n_trials} trials finished"
    if stopped_by == "timeout":
        return f"budget spent: tuning.timeout {tuning.timeout:g}s reached; {finished_trials} trials finished"
    if stopped_by == "max_cost":
        return (f"budget spent: tuning.max_cost ${tuning.max_cost:g} reached (${spent_usd:.4f} spent); "
                f"{finished_trials} trials finished")
    return f"{stopped_by}; {finished_trials} trials finished"
