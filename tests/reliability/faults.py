"""Helpers of the fault-injection tests: real `trainpipe` processes killed inside a chosen stage, and the checks
that a store holds nothing half-done afterwards (stage folders, registry versions, aliases, RUNNING runs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

INJECT = Path(__file__).resolve().parent / "inject"  # its sitecustomize.py is the fault injector


def trainpipe(*args: str, env: dict | None = None) -> subprocess.Popen:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "trainpipe", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def injector_env(mark: Path, **variables: str) -> dict:
    path = os.pathsep.join([str(INJECT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path, "TRAINPIPE_KILL_MARK": str(mark), **variables}


def kill_inside(args: list[str], stage: str, after: float, mark: Path, timeout: float = 300) -> dict:
    """Run `trainpipe ARGS`, SIGKILLed `after` seconds into `stage` (or as its code returns); the mark."""
    mark.unlink(missing_ok=True)
    proc = trainpipe(*args, env=injector_env(mark, TRAINPIPE_KILL_STAGE=stage, TRAINPIPE_KILL_AFTER=str(after)))
    code, _, err = finish(proc, timeout)
    assert code == -signal.SIGKILL, f"expected a SIGKILL inside {stage}, got exit {code}:\n{err[-3000:]}"
    return json.loads(mark.read_text())


def hold_in(args: list[str], stage: str, mark: Path, env: dict | None = None, timeout: float = 120) -> subprocess.Popen:
    """Start `trainpipe ARGS` and return once it is held at the start of `stage` (alive until killed)."""
    mark.unlink(missing_ok=True)
    proc = trainpipe(*args, env={**injector_env(mark, TRAINPIPE_HOLD_STAGE=stage), **(env or {})})
    deadline = time.monotonic() + timeout
    while not mark.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before stage {stage}:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"stage {stage} never came")
        time.sleep(0.05)
    return proc


def run_meta(store: Path, run_id: str) -> dict:
    return json.loads((store / "runs" / run_id / "run.json").read_text())


def mlflow_runs(store: Path, run_id: str | None = None) -> list:
    """The MLflow runs of the store: all of them, or the pipeline run of `run_id` (not its study's runs)."""
    from mlflow.tracking import MlflowClient

    from trainpipe.pipeline.recovery import is_pipeline_run

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    where = f"tags.`trainpipe.run_id` = '{run_id}'" if run_id else ""
    found = client.search_runs(experiments, where, max_results=1000) if experiments else []
    return [r for r in found if is_pipeline_run(r)] if run_id else found


def leftovers(store: Path) -> list[str]:
    """Half-written things: temporary stage folders and temporary files anywhere in the store."""
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.name.endswith(".tmp"))


def assert_store_consistent(store: Path, model_names: set[str] | None = None) -> dict:
    """Nothing RUNNING, nothing half-written, registry versions unique per run and aliases pointing at versions
    whose audit log agrees. Returns counts for the suite's report."""
    from mlflow.tracking import MlflowClient

    assert not leftovers(store), leftovers(store)
    running = [(r.data.tags.get("trainpipe.run_id"), r.info.status) for r in mlflow_runs(store)
               if r.info.status == "RUNNING"]
    assert not running, f"RUNNING leftovers in MLflow: {running}"
    for meta_path in (store / "runs").glob("*/run.json"):
        meta = json.loads(meta_path.read_text())
        assert meta["status"] != "running", f"{meta_path}: still running"
        assert not meta.get("owner"), f"{meta_path}: an owner is still recorded"
    from trainpipe.registry.client import Registry
    from trainpipe.registry.lock import is_lock_model
    from trainpipe.store import Store
    from trainpipe.tracking.config import TrackingConfig

    registry = Registry(Store.locate(str(store)), TrackingConfig())
    versions = 0
    for model in MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}").search_registered_models():
        if is_lock_model(model.name) or (model_names is not None and model.name not in model_names):
            continue
        mvs = registry.client.search_model_versions(f"name='{model.name}'")
        versions += len(mvs)
        runs = [mv.tags.get("trainpipe.run_id") or mv.run_id for mv in mvs]
        assert len(runs) == len(set(runs)), f"{model.name}: a run registered twice: {runs}"
        numbers = {str(mv.version) for mv in mvs}
        aliases = registry.aliases(model.name)
        last_move: dict[str, str] = {}
        for entry in registry.history(model.name):  # the audit log, oldest first
            last_move[entry["alias"]] = entry["to"]
        for alias, version in aliases.items():
            assert str(version) in numbers, f"{model.name}@{alias} -> {version}, not a version"
            assert last_move.get(alias) == str(version), f"{model.name}@{alias}: audit log ends at " \
                f"{last_move.get(alias)}, alias at {version}"
    return {"versions": versions}
