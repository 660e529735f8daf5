"""`trainpipe runs watch RUN_ID`: what a run is doing now, read from the store by any process.

Only files and the tracking store are read, never the running process: run.json (status, finished stages, the
stage in progress, and once over the exit code of `trainpipe run`), `<run>/live.json` (the fit's latest
epoch/round, values and rows/s: stages/watching.py), `<run>/events.jsonl` (health, drift, budget, gate and
champion events) and the MLflow run's latest metrics (system metrics: CPU, memory, GPU; final metrics). So it
works from another terminal or machine sharing the store, and reading never disturbs the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainpipe.errors import RunError
from trainpipe.monitoring.events import read_events
from trainpipe.stages.watching import LIVE_FILE
from trainpipe.store import Store

RECENT_EVENTS = 8  # events kept in a snapshot (the newest); the run folder has all of them
SYSTEM_PREFIX = "system/"


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not there yet, or (never: written by rename) half-written
        return None


class MetricsReader:
    """The MLflow run's latest metric values, one `get_run` per snapshot; MLflow is imported on first use."""

    def __init__(self, tracking_uri: str):
        self.uri = tracking_uri
        self._client: Any = None

    def latest(self, mlflow_run_id: str | None) -> dict[str, float]:
        if not mlflow_run_id:
            return {}
        try:
            if self._client is None:
                from mlflow import MlflowClient

                self._client = MlflowClient(self.uri)
            return dict(self._client.get_run(mlflow_run_id).data.metrics)
        except Exception:  # noqa: BLE001 -- a store busy or not there yet: the next snapshot tries again
            return {}


def snapshot(store: Store, run_id: str, metrics: MetricsReader) -> dict[str, Any]:
    """One look at the run: status, stages, the stage in progress with its epoch/round, metrics, events."""
    run_dir = store.run_dir(run_id, "RUN_ID")
    meta = _json(run_dir / "run.json")
    if meta is None:
        raise RunError(f"run {run_id!r} not found in {store.runs_dir} (if the pipeline sets `store:`, pass --store)",
                       key="run")
    status = meta.get("status", "running")
    current = meta.get("current_stage") if status == "running" else None
    live = _json(run_dir / LIVE_FILE)
    if live is not None and current is not None and live.get("stage") != current.get("name"):
        live = None  # an earlier stage's fit
    values = metrics.latest(meta.get("mlflow_run_id"))
    events = read_events(run_dir)
    doc: dict[str, Any] = {
        "run_id": run_id, "status": status, "run_dir": str(run_dir),
        "stage": current.get("name") if current else None,
        "stage_seconds": round(time.time() - current["started_at"], 1) if current and current.get("started_at") else None,
        "stages": {name: {"status": s.get("status"), "seconds": s.get("seconds")}
                   for name, s in meta.get("stages", {}).items()},
        "progress": live,
        "system": {k.removeprefix(SYSTEM_PREFIX): v for k, v in values.items() if k.startswith(SYSTEM_PREFIX)},
        "metrics": {k: v for k, v in values.items() if "/" not in k},
        "events": events[-RECENT_EVENTS:], "event_counts": _counts(events),
        "error": meta.get("error"), "mlflow_run_id": meta.get("mlflow_run_id"),
    }
    if status != "running":
        doc["exit_code"] = int(meta.get("exit_code", 0 if status == "completed" else 1))
    return doc


def _counts(events: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        check = (event.get("details") or {}).get("check") if event.get("kind") == "health" else None
        name = f"health.{check}" if check else str(event.get("kind"))
        counts[name] = counts.get(name, 0) + 1
    return counts


def watch(store: Store, run_id: str, metrics: MetricsReader, interval_s: float,
          on_snapshot: Callable[[dict[str, Any]], None] | None = None, sleep: Callable[[float], None] = time.sleep
          ) -> dict[str, Any]:
    """Snapshots every `interval_s` until the run is no longer running; returns the last."""
    while True:
        doc = snapshot(store, run_id, metrics)
        if on_snapshot is not None:
            on_snapshot(doc)
        if doc["status"] != "running":
            return doc
        sleep(interval_s)
