"""A study resumed after a kill searches as the uninterrupted one would have: the grid runs its points in the same
order and successive halving makes the same decisions (tuning/search.py, tuning/grid.py, study.recover_dead_trials)."""

from __future__ import annotations

import socket

import optuna
import pytest

from trainpipe.tuning import study as studies
from trainpipe.tuning.budget import Budget
from trainpipe.tuning.grid import GridInTrialOrder
from trainpipe.tuning.search import make_pruner, quiet_optuna

POINTS = [0, 1, 2, 3, 4]
# Loss per step (minimised). Rungs at steps 1 and 2 (min_resource 1, reduction factor 2): which points pass a rung
# depends on which points ran before them and how many values each rung holds.
# Loss per step (minimised); rungs at steps 1 and 2 (min_resource 1, reduction factor 2). The grid's seed runs the
# points in the order 3, 4, 1, 0, 2: 3 and 4 pass both rungs, 1 falls at the first, 0 at the second, 2 at the first
# (it is third of five there; one more value at that rung, a killed trial's counted twice, would let it pass).
CURVES = {3: [0.9, 0.50, 0.30], 4: [0.9, 0.40, 0.20], 1: [0.9, 0.45, 0.10], 0: [0.9, 0.30, 0.25],
          2: [0.9, 0.42, 0.05]}
EXPECTED = [(3, "COMPLETE"), (4, "COMPLETE"), (1, "PRUNED"), (0, "PRUNED"), (2, "PRUNED")]
DEAD_PID = 999_999


def objective(trial):
    x = trial.suggest_categorical("x", POINTS)
    for step, loss in enumerate(CURVES[x]):
        trial.report(loss, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return CURVES[x][-1]


def new_study():
    quiet_optuna()
    return optuna.create_study(sampler=GridInTrialOrder({"x": POINTS}, seed=3),
                               pruner=make_pruner({"type": "successive_halving", "min_resource": 1,
                                                   "reduction_factor": 2}))


def optimise(study, finished: int) -> None:
    budget = Budget(finished)
    if budget.remaining(study):
        study.optimize(objective, callbacks=[budget.callback])


def searched(study) -> list[tuple[int, str]]:
    """The points in the order they ran, with what became of them (failed trials left out: their retries ran)."""
    return [(t.params["x"], t.state.name) for t in study.trials if t.state.name != "FAIL"]


def kill(study, at: str) -> None:
    """A trial of a dead worker: started (`at` = "start": before the sampler gave it a point) or through its first
    rung (`at` = "rung")."""
    if at == "start":
        trial_id = study._storage.create_new_trial(study._study_id)
    else:
        trial = study.ask()
        x = trial.suggest_categorical("x", POINTS)
        for step in range(2):
            trial.report(CURVES[x][step], step)
            assert not trial.should_prune()
        trial_id = trial._trial_id
    study._storage.set_trial_user_attr(trial_id, "worker", f"{socket.gethostname()}:{DEAD_PID}")


@pytest.mark.parametrize("at", ["start", "rung"])
@pytest.mark.parametrize("killed", [0, 1, 3])
def test_a_grid_study_resumed_after_a_kill_runs_and_prunes_as_the_uninterrupted_one(monkeypatch, killed, at):
    monkeypatch.setattr(studies, "_alive", lambda pid: pid != DEAD_PID)
    uninterrupted = new_study()
    optimise(uninterrupted, len(POINTS))
    assert searched(uninterrupted) == EXPECTED

    resumed = new_study()
    optimise(resumed, killed)
    kill(resumed, at)  # the killed trials (3, 4, 0) pass their first rung
    assert studies.recover_dead_trials(resumed, grace_period=3600) == [killed]
    optimise(resumed, len(POINTS))
    assert searched(resumed) == EXPECTED
