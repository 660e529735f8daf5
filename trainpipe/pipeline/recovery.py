"""`trainpipe runs gc`: find runs whose process died and mark them killed, in the run folder and in MLflow.

A run is dead when run.json says `running` and `liveness.judge` finds its owner gone (same machine: the
pid with that start time no longer exists, or the machine rebooted; another machine: no heartbeat for
`stale_after` seconds). Marking one takes its lock first (a run some process has just resumed is left
alone), removes the temporary folders of the stage it was in (`.<stage>.tmp`: never an output), sets
its MLflow run KILLED (with `trainpipe.error`) and then run.json `killed`, resumable, saying which process
died during which stage. MLflow first: a gc itself killed between the two leaves a run that the next gc
still finds dead, and MLflow's status is set only while it is RUNNING, so running gc again changes
nothing. MLflow runs left RUNNING without a local run folder (a run of another machine on a shared server)
are judged by their heartbeat tag; RUNNING runs whose folder says they ended get the folder's status.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from trainpipe.errors import TrainpipeError
from trainpipe.pipeline.liveness import STALE_AFTER_SECONDS, judge, judge_tags
from trainpipe.pipeline.run_folder import lock_run, write_json
from trainpipe.pipeline.tracking import STATUS
from trainpipe.store import Store, is_run_id


def run_folders(store: Store) -> list[tuple[str, Path, dict]]:
    found: list[tuple[str, Path, dict]] = []
    if not store.runs_dir.is_dir():
        return found
    for run_dir in sorted(store.runs_dir.iterdir()):
        meta_path = run_dir / "run.json"
        if not (is_run_id(run_dir.name) and run_dir.is_dir() and meta_path.is_file()):
            continue
        try:
            found.append((run_dir.name, run_dir, json.loads(meta_path.read_text())))
        except (OSError, ValueError):
            continue  # a damaged run.json is `--resume`'s to report, not gc's to rewrite
    return found


def dead_runs(store: Store, stale_after: float = STALE_AFTER_SECONDS) -> list[dict]:
    """Every run folder of the store that says running but whose process is gone: {run_id, reason, stage}."""
    out = []
    for run_id, _, meta in run_folders(store):
        verdict = judge(meta, stale_after=stale_after)
        if verdict.dead:
            out.append({"run_id": run_id, "reason": verdict.reason, "stage": (meta.get("owner") or {}).get("stage")})
    return out


def _tracker(store: Store, run_dir: Path | None, meta: dict | None, tracking_uri: str | None) -> Any:
    """The MLflow store the run tracked into: its config's tracking.uri (environment values read again), else the
    store's own; None when tracking was off."""
    from trainpipe.tracking.config import TrackingConfig
    from trainpipe.tracking.tracker import Tracker

    tracking = TrackingConfig(uri=tracking_uri)
    if run_dir is not None and meta is not None and tracking_uri is None:
        from trainpipe.pipeline.run import Run

        try:
            tracking = Run._recorded_config(run_dir, meta).tracking
        except TrainpipeError:
            pass  # a config that no longer resolves: fall back to the store's own MLflow database
        if not tracking.enabled:
            return None
    if tracking.uri is None and not (store.root / "mlflow.db").exists():
        return None
    return Tracker(store, tracking)


def _mark_mlflow(tracker: Any, mlflow_ids: list[str], status: str, error: str, dry_run: bool) -> list[str]:
    """Set each RUNNING one of `mlflow_ids` to `status`; the ids it set (or would set)."""
    changed = []
    for mlflow_id in mlflow_ids:
        try:
            current = tracker.client.get_run(mlflow_id).info.status
        except Exception:  # noqa: BLE001 - deleted from MLflow meanwhile: nothing to mark
            continue
        if current != "RUNNING":
            continue
        if not dry_run:
            tracker.finish(mlflow_id, status, error)
        changed.append(mlflow_id)
    return changed


def _mlflow_ids(tracker: Any, run_id: str, meta: dict) -> list[str]:
    if meta.get("mlflow_run_id"):
        return [meta["mlflow_run_id"]]
    # killed before run.json learnt its MLflow id: find it by tag
    experiments = [e.experiment_id for e in tracker.client.search_experiments()]
    if not experiments:
        return []
    found = tracker.client.search_runs(experiments, f"tags.`trainpipe.run_id` = '{run_id}'")
    return [r.info.run_id for r in found if is_pipeline_run(r)]


def is_pipeline_run(run: Any) -> bool:
    """The MLflow run of a trainpipe run, not a tuning study's parent run or a trial (which carry its id too)."""
    tags = run.data.tags
    return "trainpipe.stage" not in tags and "mlflow.parentRunId" not in tags


def _mark_run(store: Store, run_id: str, run_dir: Path, reason: str, dry_run: bool,
              stale_after: float = STALE_AFTER_SECONDS) -> dict:
    entry: dict[str, Any] = {"run_id": run_id, "reason": reason, "run_dir": str(run_dir)}
    lock = None
    if not dry_run:
        try:
            lock = lock_run(run_dir, run_id)
        except TrainpipeError:
            return {**entry, "action": "skipped", "detail": "another process holds the run's lock now"}
    try:
        meta = json.loads((run_dir / "run.json").read_text())
        verdict = judge(meta, stale_after=stale_after)
        if not dry_run and not verdict.dead:  # resumed meanwhile (another machine), or ended
            return {**entry, "action": "skipped", "detail": verdict.reason}
        stage = (meta.get("owner") or {}).get("stage")
        error = (f"the run's process died during {f'stage {stage}' if stage else 'the run'} ({reason}); marked "
                 f"killed by `trainpipe runs gc`; continue with `trainpipe run --resume {run_id}`")
        entry.update(stage=stage, error=error)
        tracker = _tracker(store, run_dir, meta, None)
        entry["mlflow_killed"] = _mark_mlflow(tracker, _mlflow_ids(tracker, run_id, meta), "KILLED", error,
                                              dry_run) if tracker is not None else []
        leftovers = sorted(p for p in run_dir.glob(".*.tmp") if p.is_dir())
        entry["removed"] = [p.name for p in leftovers]
        if dry_run:
            return {**entry, "action": "would mark killed"}
        for path in leftovers:  # a half-written stage: never an output, the resume recomputes it
            shutil.rmtree(path, ignore_errors=True)
        meta.update(status="killed", resumable=True, error=error)
        meta["died"] = {"owner": meta.pop("owner", None), "reason": reason, "stage": stage,
                        "marked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if stage:
            meta.setdefault("stages", {})[stage] = {"status": "killed", "error": error}
        write_json(run_dir / "run.json", meta)
        return {**entry, "action": "marked killed"}
    finally:
        if lock is not None:
            lock.release()


def _sweep_mlflow(store: Store, tracking_uri: str | None, handled: set[str], stale_after: float,
                  dry_run: bool) -> list[dict]:
    """RUNNING MLflow runs that no local folder vouches for: another machine's dead runs (by heartbeat tag), and
    runs whose folder here says they ended (a process killed between its run.json and its MLflow update)."""
    tracker = _tracker(store, None, None, tracking_uri)
    if tracker is None:
        return []
    experiments = [e.experiment_id for e in tracker.client.search_experiments()]
    if not experiments:
        return []
    out = []
    for run in tracker.client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000):
        run_id = run.data.tags.get("trainpipe.run_id")
        if not run_id or run_id in handled or not is_run_id(run_id) or not is_pipeline_run(run):
            continue  # a study's parent run (reopened and finished by the next tune), or a run handled above
        meta_path = store.runs_dir / run_id / "run.json"
        local = None
        if meta_path.is_file() and run.data.tags.get("trainpipe.run_dir") == str(store.runs_dir / run_id):
            try:
                local = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                local = None
        if local is not None:
            if local.get("status") not in STATUS:
                continue  # running here: judged from the folder above
            status, reason = STATUS[local["status"]], f"its run folder says {local['status']}"
        else:
            verdict = judge_tags(run.data.tags, stale_after=stale_after)
            if not verdict.dead:
                continue
            status, reason = "KILLED", verdict.reason
        error = f"marked {status} by `trainpipe runs gc`: {reason}"
        if _mark_mlflow(tracker, [run.info.run_id], status, error, dry_run):
            out.append({"run_id": run_id, "mlflow_run_id": run.info.run_id, "reason": reason, "status": status,
                        "action": f"would mark MLflow {status}" if dry_run else f"marked MLflow {status}"})
    return out


def collect_garbage(store: Store, *, dry_run: bool = False, stale_after: float = STALE_AFTER_SECONDS,
                    tracking_uri: str | None = None) -> dict:
    """Mark every dead run of the store killed (run folder and MLflow); idempotent. The `runs gc` document."""
    runs = []
    for run_id, run_dir, meta in run_folders(store):
        verdict = judge(meta, stale_after=stale_after)
        if verdict.dead:
            runs.append(_mark_run(store, run_id, run_dir, verdict.reason, dry_run, stale_after))
    handled = {r["run_id"] for r in runs}
    mlflow = _sweep_mlflow(store, tracking_uri, handled, stale_after, dry_run)
    return {"dry_run": dry_run, "store": str(store.root), "runs": runs, "mlflow": mlflow,
            "marked": sum(r["action"] in ("marked killed", "would mark killed") for r in runs) + len(mlflow)}
