"""The study in MLflow: one parent run per study, one nested run per finished trial.

A trial's run is written when the trial has finished, in three calls (create, one log_batch with params,
metrics and every intermediate value, terminate) on a background thread that overlaps the next trial, so
a killed worker never leaves a trial run RUNNING. The parent run lives as long as the study: its id is
kept in the study's user attributes and a rerun reopens it.
"""

from __future__ import annotations

import functools
import json
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainpipe.tracking.tracker import _retry, history_key, param_key

if TYPE_CHECKING:
    from trainpipe.tracking.tracker import Tracker

STATES = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
PARENT_ATTR = "mlflow_parent_run_id"


def metric_names(metric: str, latency: bool) -> list[str]:
    """MLflow names of a trial's objective values."""
    return [f"validation_{metric}"] + (["latency_p99_row_ms"] if latency else [])


def _ms(moment: Any) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


def open_parent(tracker: Tracker, experiment: str, study: Any, tags: dict[str, str]) -> str:
    """The study's parent run: reopened when the study already has one, else created."""
    known = study.user_attrs.get(PARENT_ATTR)
    if known:
        try:
            tracker.reopen(known)
            return known
        except Exception:  # deleted in MLflow meanwhile: start a new one
            pass
    run_id = tracker.start_run(experiment, f"study {study.study_name}", tags)
    study.set_user_attr(PARENT_ATTR, run_id)
    return run_id


def trial_record(trial: Any, metric_names: list[str]) -> tuple[dict, dict, dict[str, list], dict]:
    """(params, metrics, intermediate values by step, tags) of one finished trial: a pure function."""
    params = {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in trial.params.items()}
    metrics = {}
    for name, value in zip(metric_names, trial.values or []):
        metrics[name] = float(value)
    record = trial.user_attrs.get("trainpipe", {})
    for key in ("duration_s", "cost_usd", "best_iteration"):
        if key in record:
            metrics[key] = float(record[key])
    # The values the pruner saw, as the train stage logs its curves (`history/validation_log_loss`), un-negated:
    # a loss standing in for a maximised metric is reported to Optuna negated.
    name = str(record.get("intermediate", "intermediate_value"))
    sign = -1.0 if name.startswith("-") else 1.0
    steps = {history_key(name.lstrip("-")): [(step, sign * value) for step, value in
                                             sorted(trial.intermediate_values.items())]}
    tags = {"optuna.trial_number": str(trial.number), "optuna.state": trial.state.name,
            "trainpipe.worker": str(trial.user_attrs.get("worker", ""))}
    for key in ("stopped_by", "error"):
        if key in record:
            tags[f"trainpipe.{key}"] = str(record[key])[:5000]
    retried = trial.system_attrs.get("failed_trial")
    if retried is not None:
        tags["optuna.retry_of"] = str(retried)
    return params, metrics, steps, tags


class TrialLogger:
    """An Optuna callback that logs each finished trial as a nested MLflow run, off the trial's thread."""

    def __init__(self, open_tracker: Callable[[], Tracker], experiment_id: str, parent_run_id: str, study_name: str,
                 metric_names: list[str]):
        # Opened on the logging thread: importing MLflow (~2 s) then overlaps the first trial.
        self.open_tracker = open_tracker
        self.tracker: Tracker | None = None
        self.experiment_id, self.parent = experiment_id, parent_run_id
        self.study_name, self.metric_names = study_name, metric_names
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="trainpipe-trial-tracking", daemon=True)
        self._thread.start()

    def __call__(self, study: Any, trial: Any) -> None:
        self._queue.put(trial)

    def _work(self) -> None:
        while (trial := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self._log(trial)
                except BaseException as exc:  # raised by close() in the worker's thread
                    self.error = exc

    def _log(self, trial: Any) -> None:
        tracker = self.tracker = self.tracker or self.open_tracker()
        log_trial(tracker.client, self.experiment_id, self.parent, self.study_name, self.metric_names, trial)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error


def log_trial(client: Any, experiment_id: str, parent: str, study_name: str, metric_names: list[str],
              trial: Any) -> None:
    """One finished trial as a nested run: create, one log_batch (per 1000 metrics), terminate."""
    from mlflow.entities import Metric, Param

    params, metrics, steps, tags = trial_record(trial, metric_names)
    run = _retry(lambda: client.create_run(
        experiment_id, start_time=_ms(trial.datetime_start), run_name=f"trial {trial.number}",
        tags={"mlflow.parentRunId": parent, "optuna.study": study_name, **tags}))
    end = _ms(trial.datetime_complete) or _ms(trial.datetime_start) or 0
    items = [Metric(param_key(k), v, end, 0) for k, v in metrics.items()]
    items += [Metric(k, float(v), end, int(step)) for k, values in steps.items() for step, v in values]
    batch_params = [Param(param_key(k), v[:6000]) for k, v in params.items()]
    for start in range(0, max(len(items), 1), 1000):  # MLflow's log_batch limit
        chunk, first = items[start:start + 1000], batch_params if start == 0 else []
        _retry(functools.partial(client.log_batch, run.info.run_id, metrics=chunk, params=first))
    _retry(lambda: client.set_terminated(run.info.run_id, status=STATES.get(trial.state.name, "KILLED"), end_time=end))


def backfill(tracker: Tracker, experiment_id: str, parent: str, study: Any, metric_names: list[str]) -> int:
    """Log the finished trials that have no complete run: those a killed worker had not logged (or was killed
    while logging: that half-written run is deleted), and those failed by heartbeat after their worker died.
    Returns how many were logged."""
    logged = set()
    token = None
    while True:
        page = tracker.client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'",
                                          max_results=1000, page_token=token)
        for run in page:
            if run.info.status == "RUNNING" and _abandoned(run):
                _retry(functools.partial(tracker.client.delete_run, run.info.run_id))
            elif "optuna.trial_number" in run.data.tags:
                logged.add(int(run.data.tags["optuna.trial_number"]))
        token = page.token
        if not token:
            break
    missing = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.number not in logged]
    for trial in missing:
        log_trial(tracker.client, experiment_id, parent, study.study_name, metric_names, trial)
    return len(missing)


def _abandoned(run: Any) -> bool:
    """A trial run left RUNNING by a dead logger of this host. Another `trainpipe tune` on this host (a second
    `--join`) may be writing its run right now, so the worker's process must be gone too; a remote worker's run
    may be mid-write: it is left alone."""
    import socket

    from trainpipe.tuning.study import _alive

    host, _, pid = run.data.tags.get("trainpipe.worker", "").rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))


def finish_parent(tracker: Tracker, run_id: str, summary: dict, files: list[Path]) -> None:
    """Best value and parameters (tags: they change as a resumed study improves), counts, cost, plots."""
    metrics = {"trials_" + state.lower(): float(n) for state, n in summary["trials"].items()}
    metrics["cost_usd"] = float(summary["cost_usd"])
    if summary.get("best_value") is not None:
        metrics["best_value"] = float(summary["best_value"])
    tracker.log_metrics(run_id, metrics, step=summary["finished"])
    tags = {f"best.{k}": json.dumps(v) if isinstance(v, (list, dict)) else str(v)
            for k, v in (summary.get("best_params") or {}).items()}
    tags.update({"optuna.stopped_by": summary["stopped_by"], "optuna.best_trial": str(summary.get("best_trial"))})
    tracker.set_tags(run_id, tags)
    tracker.log_artifacts(run_id, files, "study")
    _retry(lambda: tracker.client.set_terminated(run_id, status="FINISHED"))
