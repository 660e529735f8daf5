"""When a trial may be pruned and how many random trials start a study: defaults sized to the search.

The pruner's steps are the family's own iterations (boosting rounds, torch epochs) or, with `tuning.cv`, folds.
Left unset, successive halving (the default) puts its first rung at a tenth of a trial's iteration budget (then
×3: rounds 30, 90, 270 of 300), and the median pruner waits a sixth before its first check and checks every
sixth. Measured with benchmarks/bench_tune.py (docs/tuning.md): Optuna's hyperband with a first rung at round 1
pruned slow learners that end best (early rounds rank trials by speed); the median pruner from a sixth kept them
but spent 55–65% of random search's rounds in 30 trials; successive halving from a tenth reached random search's
best as often (15 of 23 studies each, on three tables and up to 13 seeds), with equal or better best values on
two of the three tables, in 25–48% of random search's rounds. Few decision steps also keep the storage writes few.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainpipe.tuning.config import PrunerConfig

CHECKS_PER_TRIAL = 6  # the median pruner's auto warm-up and interval are each 1/6 of a trial's iterations
FIRST_RUNG_SHARE = 10  # successive halving / hyperband: the first rung at 1/10 of a trial's iterations
STARTUP_TRIALS = (5, 10)  # bounds of the sampler's auto random start-up: one trial more than the searched parameters


def startup_trials(configured: int | None, space: dict) -> int:
    """Random trials before TPE (or CMA-ES) models the results: `configured`, else one more than the number of
    searched parameters within STARTUP_TRIALS. Optuna's fixed 10 spends a third of a 30-trial study on random
    draws for a 4-parameter space, and too few for a wide one; on the xgboost space (6 parameters) 7 reached
    random search's best more often than 10 (docs/tuning.md)."""
    if configured is not None:
        return configured
    low, high = STARTUP_TRIALS
    return min(high, max(low, len(space) + 1))


def iteration_budget(family: str, params: dict, cv_folds: int | None = None) -> int | None:
    """Steps one trial can report: CV folds, else the family's iteration count from `params` or its default;
    None for a family that reports nothing per iteration (sklearn estimators without CV).

    The per-family facts (which parameter counts iterations, its default) are read here and nowhere else in
    tuning/, so this is the one place to point at the family classes' own attributes once they carry them."""
    if cv_folds:
        return int(cv_folds)
    if family in ("xgboost", "lightgbm"):
        from trainpipe.models import get_family

        return int(params.get("n_estimators", get_family(family).DEFAULTS["n_estimators"]))
    if family == "torch_mlp":
        from trainpipe.engine.config import EngineParams

        return int(params.get("epochs", EngineParams.model_fields["epochs"].default))
    return None


def pruner_settings(pruner: PrunerConfig, budget: int | None) -> dict[str, Any]:
    """The pruner config as the plain dict the objective and `make_pruner` use, with what is unset sized to
    `budget`: successive halving's (and hyperband's) first rung a tenth of it, the median pruner's warm-up and
    interval a sixth each (all at least 1 step)."""
    settings = pruner.model_dump()
    share = max(1, round(budget / CHECKS_PER_TRIAL)) if budget else 1
    if settings["min_resource"] is None:
        settings["min_resource"] = max(1, round(budget / FIRST_RUNG_SHARE)) if budget else 1
    if settings["n_warmup_steps"] is None:
        settings["n_warmup_steps"] = share if budget else 0
    if settings["interval_steps"] is None:
        settings["interval_steps"] = share
    return settings
