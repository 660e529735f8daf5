"""The grid sampler, with its points given in trial order not counting retries.

Optuna's GridSampler gives trial n the n-th point of its (seeded, shuffled) grid. A trial killed with its
process is retried as a new trial, with a new number, carrying the killed trial's point
(tuning/study.py `recover_dead_trials`). From then on Optuna's numbers and points drift apart: the next trial
takes the point after the one it should have run, and the skipped point comes later. A resumed grid then runs
its points in another order than the uninterrupted study, and successive halving, which compares a trial with
the trials before it, prunes other trials: the kill changes the study's best trial. Here trial n takes point
n - (retries numbered below n). Without a kill that is Optuna's rule exactly; after one it is the
uninterrupted order. Where that point is taken already (a retry of a retry, a user's own enqueued trial),
Optuna's own choice among the unvisited points applies.

Written by hand because no Optuna option orders the grid around retries; it overrides only `before_trial`,
reading the parent's grid (`_all_grids`, `_search_space`, `_n_min_trials`, `_rng`) as Optuna 5.0 defines it.
"""

from __future__ import annotations

from typing import Any

from optuna.samplers import GridSampler


class GridInTrialOrder(GridSampler):
    def before_trial(self, study: Any, trial: Any) -> None:
        if "grid_id" in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return  # a retry (it runs its failed trial's point) or an enqueued trial
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        retries = sum(1 for t in trials if t.number < trial.number and "failed_trial" in t.system_attrs)
        taken = {t.system_attrs["grid_id"] for t in trials if "grid_id" in t.system_attrs}
        point = trial.number - retries
        if not (0 <= point < self._n_min_trials) or point in taken:
            unvisited = self._get_unvisited_grid_ids(study) or list(range(self._n_min_trials))
            point = int(self._rng.rng.choice(unvisited))
        study._storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
        study._storage.set_trial_system_attr(trial._trial_id, "grid_id", point)
