"""The objective: fit one parameter set, report intermediate values for pruning, score on validation.

Intermediate values come through the families' own `report` callbacks (boosting rounds, torch epochs) or,
with `tuning.cv`, one per fold. Each report is a storage write (~2–5 ms on SQLite), so values are reported
only at the steps where the pruner can decide (hyperband/successive-halving rungs, median's intervals) and
at the last iteration; pruning decisions are the same as with a report every iteration.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

import numpy as np

from trainpipe.errors import ModelError
from trainpipe.monitoring.cost import Rates, ResourceMeter, estimate_cost
from trainpipe.tuning.space import ParamSpec, suggest

if TYPE_CHECKING:
    from trainpipe.models.base import FitResult, ReportFn

# Per-iteration values are named like the final metrics (`validation_<metric>`: models/gbdt.py maps the
# boosters' names), so the metric itself is reported when a family computes it each iteration. Otherwise a
# validation loss stands in (negated for a maximised metric, so "better" points the same way).
LOSSES = ("validation_log_loss", "validation_loss", "validation_rmse", "validation_mse")


@dataclass(frozen=True)
class ObjectiveSettings:
    """Everything a worker process needs to score a parameter set (plain values: it travels as JSON)."""

    task: str
    family: str
    base_params: dict[str, Any]
    estimator: str | None
    space: dict[str, ParamSpec]
    metric: str
    direction: str  # minimize | maximize
    latency_objective: bool
    seed: int
    threads: int
    early_stopping_rounds: int | None
    n_classes: int
    categorical: dict | None
    pruner: dict  # PrunerConfig as a dict
    cv_folds: int | None = None
    cv_strategy: str = "kfold"
    trial_timeout: float | None = None
    usd_per_hour: float = 0.0  # tuning.cost: one process's hourly price (× trial_world_size: a trial's)
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # training.distributed.backend: the process group of a DDP trial (trial_world_size > 1)

    @property
    def rates(self) -> Rates:
        """`tuning.cost.usd_per_hour` is a flat price per worker-hour: the machine_hour rate of monitoring.cost."""
        return Rates(machine_hour=self.usd_per_hour)


@dataclass
class TrialData:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    groups: np.ndarray | None = None  # group CV: one value per train + validation row
    folds: list = field(default_factory=list)  # CV: (fit rows, held-out rows) of train + validation


def pick_intermediate(values: dict[str, float], metric: str, direction: str) -> tuple[str, float] | None:
    """(name, sign): which reported value stands for the objective while a model trains."""
    if f"validation_{metric}" in values:
        return f"validation_{metric}", 1.0
    for key in LOSSES:
        if key in values:
            return key, 1.0 if direction == "minimize" else -1.0
    return None


def is_decision_step(pruner: dict, step: int) -> bool:
    """Whether the pruner can act at this step; reporting only there gives it the same decisions. Without a
    pruner nothing is reported while training (only the last value, by Reporter.finish)."""
    if pruner["type"] == "none":
        return False
    if pruner["type"] == "median":
        return step >= pruner["n_warmup_steps"] and (step - pruner["n_warmup_steps"]) % pruner["interval_steps"] == 0
    base, factor = pruner["min_resource"], pruner["reduction_factor"]
    if step == 0:
        return True  # the first value, for the intermediate-values plot
    while step > base and step % factor == 0:
        step //= factor
    return step == base


def decision_steps(pruner: dict, limit: int) -> list[int]:
    return [step for step in range(limit) if is_decision_step(pruner, step)]


class Reporter:
    """A family's ReportFn that reports to the trial, asks the pruner, and enforces the per-trial time limit."""

    def __init__(self, trial: Any, settings: ObjectiveSettings, deadline: float | None):
        self.trial, self.settings, self.deadline = trial, settings, deadline
        self.key: tuple[str, float] | None = None
        self.last: tuple[int, float] | None = None
        self.reported: set[int] = set()
        self.stopped: str | None = None  # "pruned" | "trial_timeout"

    def __call__(self, step: int, values: dict[str, float]) -> bool:
        if self.key is None:
            self.key = pick_intermediate(values, self.settings.metric, self.settings.direction)
            if self.key is None:
                return False
        name, sign = self.key
        if name not in values:
            return False
        value = sign * float(values[name])
        self.last = (step, value)
        if self.deadline is not None and time.perf_counter() > self.deadline:
            self._report(step, value)
            self.stopped = "trial_timeout"
            return True
        if is_decision_step(self.settings.pruner, step):
            self._report(step, value)
            if self.trial.should_prune():
                self.stopped = "pruned"
                return True
        return False

    def _report(self, step: int, value: float) -> None:
        if step not in self.reported and np.isfinite(value):
            self.trial.report(value, step)
            self.reported.add(step)

    def finish(self) -> str | None:
        """Report the last iteration's value too, so every trial's curve ends where it stopped; returns the
        reported value's name ("-" in front: negated)."""
        if self.last is not None:
            self._report(*self.last)
        return None if self.key is None else ("-" if self.key[1] < 0 else "") + self.key[0]


def fit_model(settings: ObjectiveSettings, params: dict, X: np.ndarray, y: np.ndarray, X_val: np.ndarray,
              y_val: np.ndarray, report: ReportFn | None) -> tuple[Any, FitResult]:
    """One parameter set's fit, as every trial (and every rank of a DDP trial: tuning/trial_ranks.py) runs it."""
    from trainpipe.models import ModelConfig, build_family
    from trainpipe.models.base import FitContext

    model = build_family(ModelConfig(type=settings.family, params=params, estimator=settings.estimator),
                         settings.task, settings.n_classes, settings.seed, settings.threads)
    context = FitContext(categorical=settings.categorical, verbose=False,  # every family's fit takes one
                         backend=settings.backend)
    result = model.fit(X, y, X_val, y_val, early_stopping_rounds=settings.early_stopping_rounds, report=report,
                       context=context)
    return model, result


def score(settings: ObjectiveSettings, model: Any, X_val: np.ndarray, y_val: np.ndarray) -> list[float]:
    from trainpipe.evaluation.metrics import EvaluationConfig, compute_metrics, measure_latency

    metrics, _ = compute_metrics(settings.task, y_val, model, X_val, settings.n_classes, EvaluationConfig())
    if settings.metric not in metrics:
        raise ModelError(f"tuning.metric: {settings.metric} could not be computed on the validation rows "
                         "(e.g. only one class present)", key="tuning.metric")
    values = [float(metrics[settings.metric])]
    if settings.latency_objective:
        values.append(measure_latency(model, X_val, settings.task, 256, 10)["latency_p99_row_ms"])
    return values


def cv_folds(settings: ObjectiveSettings, y: np.ndarray, groups: np.ndarray | None) -> list:
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    k = settings.cv_folds
    if settings.cv_strategy == "group":
        splitter = GroupKFold(n_splits=k)
    elif settings.cv_strategy == "stratified":
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=settings.seed)
    else:
        splitter = KFold(n_splits=k, shuffle=True, random_state=settings.seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def outcome(trial: Any) -> dict:
    """What the objective recorded about a trial (one user attribute, so one storage write per trial):
    duration_s, cpu_s, cost_usd, and where known best_iteration, intermediate, stopped_by, error."""
    return dict(trial.user_attrs.get("trainpipe", {}))


def make_objective(settings: ObjectiveSettings, data: TrialData,
                   announce: Callable[[int, dict], None] | None = None) -> Callable[[Any], float | list[float]]:
    """The function Optuna calls per trial: returns the metric (and latency), or raises TrialPruned.
    `announce(number, params)`: rank 0 of a DDP trial tells the other ranks what to fit (tuning/trial_ranks.py)."""
    import optuna
    from threadpoolctl import threadpool_limits

    worker = f"{socket.gethostname()}:{os.getpid()}"
    if settings.cv_folds:
        X_all = np.concatenate([data.X_train, data.X_val])
        y_all = np.concatenate([data.y_train, data.y_val])

    def objective(trial: Any) -> float | list[float]:
        started = time.perf_counter()
        meter = ResourceMeter()  # wall and CPU time of this trial: the same cost code as a whole run's
        trial.set_user_attr("worker", worker)  # first: a dead worker's trial is recognised by it
        params = {**settings.base_params, **suggest(trial, settings.space)}
        if announce is not None:
            announce(trial.number, params)
        deadline = started + settings.trial_timeout if settings.trial_timeout else None
        record: dict[str, Any] = {}
        try:
            # OpenMP/BLAS pools (HistGradientBoosting, numpy) follow `threads` too: with N workers on one
            # machine each must not take every core.
            with threadpool_limits(limits=settings.threads):
                values, record = _run(trial, params, deadline)
        except ModelError as exc:  # this parameter set cannot be trained: the trial fails, the study goes on
            record["error"] = exc.message
            raise
        finally:
            usage = meter.usage()
            trial.set_user_attr("trainpipe", {"duration_s": round(usage.wall_s, 4), "cpu_s": round(usage.cpu_s, 3),
                                              "cost_usd": estimate_cost(usage, settings.rates), **record})
        if record.get("stopped_by") or values is None:
            raise optuna.TrialPruned(record.get("stopped_by"))
        return values[0] if len(values) == 1 else values

    def _run(trial: Any, params: dict, deadline: float | None) -> tuple[list | None, dict]:
        intermediate: str | None
        if settings.cv_folds:
            values, best, stopped, iterations = _cross_validate(trial, settings, params, X_all, y_all, data.folds,
                                                                deadline)
            intermediate = f"cv_mean_{settings.metric}"
        else:
            reporter = Reporter(trial, settings, deadline)
            model, result = fit_model(settings, params, data.X_train, data.y_train, data.X_val, data.y_val, reporter)
            intermediate = reporter.finish()
            stopped, best, iterations = reporter.stopped, result.best_iteration, result.iterations
            if best is None and result.iterations:
                best = result.iterations - 1
            values = None if stopped else score(settings, model, data.X_val, data.y_val)
        # iterations: what the trial trained (boosting rounds, epochs; summed over CV folds), its compute in the
        # family's own unit, whatever the machine's load
        record: dict[str, Any] = {"intermediate": intermediate, "stopped_by": stopped, "iterations": int(iterations) or None}
        if best is not None:
            record["best_iteration"] = int(best)
        return values, {k: v for k, v in record.items() if v is not None}

    return objective


def _cross_validate(trial: Any, settings: ObjectiveSettings, params: dict, X: np.ndarray, y: np.ndarray,
                    folds: list, deadline: float | None) -> tuple[list[float] | None, int | None, str | None, int]:
    """Mean of the fold scores; after each fold the running mean is the intermediate value (step = fold)."""
    scores, bests, iterations = [], [], 0
    for step, (fit_rows, held_out) in enumerate(folds):
        model, result = fit_model(settings, params, X[fit_rows], y[fit_rows], X[held_out], y[held_out], None)
        iterations += result.iterations
        scores.append(score(settings, model, X[held_out], y[held_out]))
        if result.best_iteration is not None:
            bests.append(result.best_iteration)
        mean = [float(np.mean([s[i] for s in scores])) for i in range(len(scores[0]))]
        if settings.latency_objective:
            continue  # multi-objective studies cannot report intermediate values
        trial.report(mean[0], step)
        if deadline is not None and time.perf_counter() > deadline and step < len(folds) - 1:
            return None, None, "trial_timeout", iterations
        if settings.pruner["type"] != "none" and trial.should_prune():
            return None, None, "pruned", iterations
    best = round(float(np.mean(bests))) if bests else None
    return mean, best, None, iterations
