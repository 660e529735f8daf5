"""Config section `tuning`: the search space, objective, sampler, pruner, budgets, storage and CV.

Budget keys (`n_trials`, `timeout`, `max_cost`, `workers`) and `trial_world_size` change how long a study runs
or on how many processes, not which study it is: they are left out of the study's name, so raising `n_trials`
continues the same study.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainpipe.tuning.space import ParamSpec, check_conditions


class SamplerConfig(BaseModel):
    """`tuning.sampler`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["tpe", "random", "cmaes", "grid", "nsga2"] = Field(
        "tpe", description="tpe (default), random, cmaes (needs `pip install cmaes`), grid (every combination; int, "
                           "categorical and stepped float parameters) or nsga2 (two objectives).")
    multivariate: bool = Field(False, description="tpe: model the parameters jointly instead of one by one; off by "
                               "default: with successive halving it narrowed the search onto the fast learners and "
                               "reached random search's best less often (docs/tuning.md).")
    n_startup_trials: int | None = Field(None, ge=0, description="tpe/cmaes: random trials before the model takes "
                                         "over; default one more than the searched parameters, 5 to 10.")
    population_size: int = Field(50, ge=2, description="nsga2: individuals per generation.")


class PrunerConfig(BaseModel):
    """`tuning.pruner`. Intermediate values: boosting rounds, torch epochs, or CV folds (`tuning.cv`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["median", "hyperband", "successive_halving", "none"] = Field(
        "successive_halving", description="successive_halving (default: at each rung only the best third of the "
                              "trials that reached it trains on), median (stop a trial whose best value so far is "
                              "worse than the median of finished trials at the same step), hyperband or none.")
    min_resource: int | None = Field(None, ge=1, description="hyperband/successive_halving: iterations before the "
                                     "first rung; default a tenth of a trial's iterations (model.params n_estimators "
                                     "or epochs, or tuning.cv.folds), at least 1.")
    reduction_factor: int = Field(3, ge=2, description="hyperband/successive_halving: 1/factor of trials go on "
                                  "at each rung.")
    n_startup_trials: int = Field(5, ge=0, description="median: trials that complete before any is pruned.")
    n_warmup_steps: int | None = Field(None, ge=0, description="median: iterations before a trial may be pruned; "
                                       "default a sixth of a trial's iterations (model.params n_estimators or "
                                       "epochs, or tuning.cv.folds).")
    interval_steps: int | None = Field(None, ge=1, description="median: iterations between pruning checks; default "
                                       "a sixth of a trial's iterations, so about 6 checks per trial. Each check "
                                       "writes to the storage (~2–5 ms on SQLite).")


class CVConfig(BaseModel):
    """`tuning.cv`: score each trial by cross-validation over train + validation rows (small data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    folds: int | None = Field(None, ge=2, description="Number of folds; null: no CV (fit on train, score on validation).")
    strategy: Literal["kfold", "stratified", "group"] = Field("kfold", description="kfold, stratified (classification) "
                                                              "or group (rows sharing group_column stay together).")
    group_column: str | None = Field(None, description="group: the column whose values define the groups.")

    @model_validator(mode="after")
    def _group(self) -> CVConfig:
        if self.strategy == "group" and not self.group_column:
            raise ValueError("group_column: strategy group needs the column that defines the groups")
        return self


class CostConfig(BaseModel):
    """`tuning.cost`: what compute costs, for `tuning.max_cost` and each trial's `cost_usd`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    usd_per_hour: float | dict[str, float] = Field(0.0, description="Hourly rate of one worker's compute, or "
                                                   "rates by compute type: {cpu: 0.2, gpu: 2.5}.")
    compute: str | None = Field(None, description="Which rate of usd_per_hour applies (when it is a mapping).")

    @model_validator(mode="after")
    def _rate(self) -> CostConfig:
        if isinstance(self.usd_per_hour, dict) and (self.compute is None or self.compute not in self.usd_per_hour):
            raise ValueError(f"compute: name one of the compute types in usd_per_hour "
                             f"({', '.join(self.usd_per_hour) or 'none given'}), got {self.compute!r}")
        if self.rate < 0:
            raise ValueError("usd_per_hour: a rate cannot be negative")
        return self

    @property
    def rate(self) -> float:
        if isinstance(self.usd_per_hour, dict):
            return float(self.usd_per_hour[self.compute]) if self.compute is not None else 0.0  # refused by _rate
        return float(self.usd_per_hour)


class TuningConfig(BaseModel):
    """Config section `tuning` (the `tune` stage; `trainpipe tune` turns it on)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Run the tune stage before train (`trainpipe tune` sets this).")
    space: dict[str, ParamSpec] = Field(default_factory=dict, description="Parameters to search; empty: the "
                                        "family's default space (docs/tuning.md).")
    metric: str | None = Field(None, description="Validation metric to optimise; default evaluation's primary metric.")
    direction: Literal["minimize", "maximize"] | None = Field(None, description="Default from the metric.")
    latency_objective: bool = Field(False, description="Add p99 prediction latency per row as a second objective "
                                    "(minimised); needs sampler nsga2 or random, and no pruning.")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    cv: CVConfig = Field(default_factory=CVConfig)
    n_trials: int = Field(50, ge=1, description="Trials in the study in total (finished + pruned), across reruns "
                                   "and workers: a resumed study runs only the missing ones.")
    timeout: float | None = Field(None, gt=0, description="Seconds this invocation may spend on trials; stops cleanly.")
    trial_timeout: float | None = Field(None, gt=0, description="Seconds one trial may run; checked at each "
                                        "intermediate value, the trial is then pruned.")
    max_cost: float | None = Field(None, gt=0, description="USD the whole study may spend (trial time × "
                                   "cost.usd_per_hour); stops cleanly.")
    cost: CostConfig = Field(default_factory=CostConfig)
    workers: int = Field(1, ge=1, description="Worker processes on this machine sharing the storage.")
    trial_world_size: int = Field(1, ge=1, description="torch families: processes of each trial, a DDP job under "
                                  "torchrun on this machine (rank 0 owns the Optuna trial); independent of workers: "
                                  "workers × trial_world_size processes in all (docs/tuning.md).")
    seed: int | None = Field(None, description="Sampler seed; default the top-level seed (worker i uses seed + i).")
    storage: str | None = Field(None, description="SQLAlchemy URL of the Optuna storage; default "
                                "sqlite:///<store>/optuna.db. PostgreSQL lets many machines join (docs/tuning.md; the password in "
                                "PGPASSFILE or ~/.pgpass, never here).")
    study_name: str | None = Field(None, description="Default: <name>-<hash of data, model and search settings>.")
    heartbeat_interval: int = Field(10, ge=1, description="Seconds between a running trial's heartbeats.")
    grace_period: int = Field(30, ge=2, description="A trial without a heartbeat this long is failed and retried.")
    plots: bool = Field(True, description="Save optimization history, parameter importances, parallel coordinates "
                        "and intermediate values as PNG artifacts (~1–3 s of matplotlib per study).")
    retrain_on: Literal["train", "train+validation"] = Field(
        "train", description="Refit the best parameters on train (early stopping on validation), or on train + "
                             "validation with the best trial's iteration count.")


def tuning_problems(task: str, tuning: TuningConfig, metrics: dict) -> list[str]:
    """Cross-key checks, one line each naming the key (run from PipelineConfig's cross-checks)."""
    problems = check_conditions(tuning.space)
    if tuning.max_cost is not None and tuning.cost.rate <= 0:
        problems.append("tuning.max_cost: needs tuning.cost.usd_per_hour (the hourly rate of a worker)")
    if tuning.sampler.type == "nsga2" and not tuning.latency_objective:
        problems.append("tuning.sampler.type: nsga2 is for two objectives; set tuning.latency_objective: true")
    if tuning.latency_objective and tuning.sampler.type not in ("nsga2", "random"):
        problems.append(f"tuning.latency_objective: two objectives need sampler nsga2 or random, not {tuning.sampler.type}")
    if tuning.latency_objective and tuning.pruner.type != "none":
        problems.append("tuning.pruner.type: Optuna cannot prune multi-objective studies; set it to none")
    if tuning.trial_world_size > 1 and tuning.cv.folds:
        problems.append("tuning.trial_world_size: cross-validated trials (tuning.cv.folds) run in one process; set "
                        "trial_world_size to 1 or remove tuning.cv")
    if tuning.grace_period <= tuning.heartbeat_interval:
        problems.append("tuning.grace_period: must be longer than tuning.heartbeat_interval")
    if not tuning.enabled or problems:
        return problems
    if task not in metrics or task == "ranking":
        return [f"tuning: task {task} cannot be tuned yet; tuning supports binary, multiclass and regression"]
    if tuning.metric is not None and tuning.metric not in metrics[task]:
        import difflib

        close = difflib.get_close_matches(tuning.metric, metrics[task], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"tuning.metric: {tuning.metric!r} is not a {task} metric{hint}; choose one of "
                        f"{', '.join(metrics[task])}")
    if tuning.cv.strategy == "stratified" and tuning.cv.folds and task == "regression":
        problems.append("tuning.cv.strategy: stratified needs a classification task; use kfold or group")
    return problems
