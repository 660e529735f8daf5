"""How a study searches: its sampler and pruner, built from `tuning`, with what keeps a resumed study's pruning
(and a grid's order) those of the uninterrupted study. TPE and random search restart their random state on
resume, so their later trials differ anyway (docs/tuning.md).

A trial killed with its process is failed and retried (tuning/study.py `recover_dead_trials`; Optuna's
retry callback on a stale heartbeat). The retry carries the failed trial's parameters and its successive-halving
rung values (Optuna copies the system attributes), so it continues the killed trial's rungs; a grid gives its
points in trial order not counting retries (tuning/grid.py). Optuna's successive
halving compares a trial with the rung values of every trial, failed ones included: the killed trial's values
would count twice, once as the failed trial's and once as its retry's, and a resumed study would prune other
trials differently from an uninterrupted one. `WithoutFailedTrials` leaves failed trials out of that comparison
(measured: a grid study killed inside its first trial, resumed, completed the trial the uninterrupted study pruned).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from trainpipe.errors import MissingDependency
from trainpipe.tuning.schedule import startup_trials

if TYPE_CHECKING:
    from trainpipe.tuning.config import TuningConfig


def quiet_optuna() -> Any:
    """Optuna, imported with its INFO lines and experimental-feature warnings off (trainpipe prints its own)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    return optuna


def make_sampler(tuning: TuningConfig, space: dict, seed: int) -> Any:
    optuna = quiet_optuna()
    kind = tuning.sampler
    startup = startup_trials(kind.n_startup_trials, space)
    if kind.type == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=kind.multivariate, n_startup_trials=startup)
    if kind.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind.type == "cmaes":
        import importlib.util

        if importlib.util.find_spec("cmaes") is None:
            raise MissingDependency("tuning.sampler.type: cmaes needs the cmaes package; pip install cmaes",
                                    key="tuning.sampler.type")
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
    if kind.type == "grid":
        from trainpipe.tuning.grid import GridInTrialOrder
        from trainpipe.tuning.space import grid

        return GridInTrialOrder(grid(space), seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=kind.population_size)


def make_pruner(pruner: dict[str, Any]) -> Any:
    """`pruner`: `tuning.pruner` with its defaults sized to the trial (schedule.pruner_settings)."""
    optuna = quiet_optuna()
    if pruner["type"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=pruner["min_resource"],
                                              reduction_factor=pruner["reduction_factor"])
    if pruner["type"] == "successive_halving":
        return WithoutFailedTrials(optuna.pruners.SuccessiveHalvingPruner(min_resource=pruner["min_resource"],
                                                                          reduction_factor=pruner["reduction_factor"]))
    if pruner["type"] == "median":  # compares with complete trials only
        return optuna.pruners.MedianPruner(n_startup_trials=pruner["n_startup_trials"],
                                           n_warmup_steps=pruner["n_warmup_steps"],
                                           interval_steps=pruner["interval_steps"])
    return optuna.pruners.NopPruner()


class WithoutFailedTrials:
    """A pruner that decides as `pruner` would on the study without its failed trials (module docstring).
    Optuna needs only `prune` of a pruner (it checks no base class). Not for hyperband: Optuna's samplers
    recognise HyperbandPruner by its class to see only its bracket."""

    def __init__(self, pruner: Any) -> None:
        self.pruner = pruner

    def prune(self, study: Any, trial: Any) -> bool:
        return bool(self.pruner.prune(_StudyWithoutFailedTrials(study), trial))


class _StudyWithoutFailedTrials:
    """The study with `get_trials` leaving out failed trials; everything else is the study's own."""

    def __init__(self, study: Any) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list:
        return [t for t in self._study.get_trials(deepcopy=deepcopy, states=states) if t.state.name != "FAIL"]
