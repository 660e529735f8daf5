"""What both boosters do each boosting round: metric names, the progress line, the health watcher, the budget.

Plain functions and two small classes shared by XGBoostFamily and LightGBMFamily (models/gbdt.py), and by the
Dask and external-memory paths: composition, not a base class.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from trainpipe.engine.callbacks import IterationWatch, WatchSpec
from trainpipe.errors import BudgetExceeded
from trainpipe.models.base import FitContext, FitResult, ReportFn

if TYPE_CHECKING:
    from trainpipe.monitoring.cost import BudgetStop

# The boosters' metric names → trainpipe's (evaluation/metrics.py), so a per-iteration value and evaluate's final
# one have one name (validation_log_loss, not validation_logloss / validation_binary_logloss). Others pass through.
METRIC_NAMES = {"logloss": "log_loss", "mlogloss": "log_loss", "binary_logloss": "log_loss",
                "multi_logloss": "log_loss", "cross_entropy": "log_loss", "auc": "roc_auc", "aucpr": "pr_auc",
                "average_precision": "pr_auc", "rmse": "rmse", "l2_root": "rmse", "l2": "mse", "mse": "mse",
                "l1": "mae", "mae": "mae", "mape": "mape", "error": "error_rate", "binary_error": "error_rate",
                "merror": "error_rate", "multi_error": "error_rate"}
HIGHER_IS_BETTER = ("roc_auc", "pr_auc", "ndcg", "map")


def metric_key(split: str, library_metric: str) -> str:
    """`validation_log_loss` for xgboost's (validation, logloss) or LightGBM's (validation, binary_logloss)."""
    return f"{split}_{METRIC_NAMES.get(library_metric, library_metric)}"


def fit_result(log: dict, best: int | None, rounds_kept: int, rounds_asked: int) -> FitResult:
    """rounds_kept: the booster's own count, for a fit that watched nothing (else the rounds the history shows: a
    booster cut back to its best round by early stopping holds fewer)."""
    history = {metric_key(split, metric): [float(v) for v in values]
               for split, metrics in log.items() for metric, values in metrics.items()}
    rounds = len(next(iter(history.values()))) if history else rounds_kept
    return FitResult(history=history, best_iteration=best, iterations=rounds, stopped_early=rounds < rounds_asked)


class RoundProgress:
    """Per-round progress of a booster on a terminal: rounds done of n_estimators, the first validation metric
    and its best so far, and the ETA (engine/progress.py LiveLine; throttled, so a round costs a clock read)."""

    def __init__(self, enabled: bool, family: str, rounds: int):
        from trainpipe.engine.progress import LiveLine

        self.line = LiveLine(enabled, f"{family} round", rounds)
        self.best: tuple[float, int] | None = None

    def __call__(self, round_: int, values: dict[str, float]) -> None:
        key = next((k for k in values if k.startswith("validation_")), None)
        if key is not None:
            value = values[key]
            higher = key.removeprefix("validation_") in HIGHER_IS_BETTER
            if self.best is None or (value > self.best[0] if higher else value < self.best[0]):
                self.best = (value, round_)
        if self.line.due():
            text = "" if key is None or self.best is None else (f"{key} {values[key]:.5g}  best {self.best[0]:.5g} "
                                                                f"(round {self.best[1] + 1})")
            self.line.update(round_ + 1, text)

    @property
    def shown(self) -> bool:
        return self.line.bar is not None

    def close(self) -> None:
        self.line.close()


def round_progress(context: FitContext | None, family: str, rounds: int) -> RoundProgress | None:
    """The progress line when the run asked for progress and stderr is a terminal that shows it. None otherwise:
    a line nobody sees must not make the booster evaluate the validation set every round (`watch_validation`;
    measured 1.4 s of a 1M-row, 200-round xgboost run whose stderr was a log file)."""
    if context is None or not context.verbose:
        return None
    progress = RoundProgress(True, family, rounds)
    return progress if progress.shown else None


THROUGHPUT_WINDOW_S = 1.0  # rows/s of the boosters over at least this long: one round of a small model is noise


class RoundWatch:
    """The fit's watcher (health checks) fed per boosting round with the round's values, and with the rows per
    second (training rows × rounds over their seconds: building the trees and evaluating the watched sets)
    whenever THROUGHPUT_WINDOW_S has passed; rounds of milliseconds measured one by one differ 50-fold from
    scheduling noise alone, which would make the throughput check cry wolf."""

    def __init__(self, watch: IterationWatch, rows: int):
        self.watch, self.rows = watch, rows
        self._since, self._rounds = time.perf_counter(), 0

    def __call__(self, round_: int, values: dict[str, float]) -> None:
        self._rounds += 1
        elapsed = time.perf_counter() - self._since
        speed = None
        if elapsed >= THROUGHPUT_WINDOW_S:
            speed = self.rows * self._rounds / elapsed
        self.watch.observe(round_, values, speed)
        if speed is not None:
            self._since, self._rounds = time.perf_counter(), 0  # the watcher's own time is not the booster's


def round_watch(context: FitContext | None, metric: str | list[str], train_metrics: bool, rows: int) -> RoundWatch | None:
    """The per-round watcher a fit's context asks for, told what the booster stops on (a list: the first)."""
    if context is None or context.watch is None:
        return None
    name = metric if isinstance(metric, str) else metric[0]
    monitor = metric_key("validation", name)
    higher = monitor.removeprefix("validation_") in HIGHER_IS_BETTER
    loss = metric_key("train", name) if train_metrics and not higher else monitor  # a loss to stall on
    return RoundWatch(context.watch(WatchSpec(monitor=monitor, mode="max" if higher else "min", loss=loss,
                                              grad_norm="", unit="round")), rows)


def watch_validation(early_stopping_rounds: int | None, reads_rounds: bool, train_metrics: bool) -> bool:
    """Whether the booster evaluates the validation set every round: only when something needs the values (early
    stopping, a tuner's pruning, the progress line) or the user asked for per-round curves (`training.train_metrics`).
    Otherwise it is pure cost (1-1.5 s of 200 rounds on 150k validation rows), and evaluate scores validation once.
    The health checks watch what is evaluated anyway (and the throughput): they never add this cost."""
    return bool(early_stopping_rounds) or reads_rounds or train_metrics


def per_round(report: ReportFn | None, progress: RoundProgress | None, watch: RoundWatch | None = None,
              budget: Callable[[], BudgetStop | None] | None = None) -> ReportFn | None:
    """One per-round function for the boosters' callbacks: progress, the watcher, then the tuner's report (True:
    stop), then the run's budget (raises BudgetExceeded between two rounds)."""
    if report is None and progress is None and watch is None and budget is None:
        return None

    def on_round(round_: int, values: dict[str, float]) -> bool:
        if progress is not None:
            progress(round_, values)
        if watch is not None:
            watch(round_, values)
        if budget is not None and (stop := budget()) is not None:
            raise BudgetExceeded(f"{stop.message}: training stopped after boosting round {round_ + 1} (boosters "
                                 "keep no checkpoint: a resume trains again)", key=stop.key)
        return bool(report(round_, values)) if report is not None else False

    return on_round
