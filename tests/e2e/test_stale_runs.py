"""A run whose process was SIGKILLed is recognised as dead (runs list, runs gc, --resume); a live one is refused.

Real `trainpipe` processes, killed or held inside a stage by tests/reliability/inject/sitecustomize.py.
"""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest
import yaml

from tests.conftest import run_cli, run_cli_json
from tests.reliability.faults import (assert_store_consistent, hold_in, leftovers, mlflow_runs,
                                      run_meta)

# real pipelines in subprocesses: seconds each on a quiet machine, minutes on one loaded 10x over
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

FAST_BEAT = {"TRAINPIPE_HEARTBEAT_SECONDS": "0.3"}


def wait_for_heartbeat_tag(store, run_id: str, timeout: float = 60):
    """The run's MLflow run once a heartbeat reached it (the tracking thread creates it while stages go on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = mlflow_runs(store, run_id) if (store / "mlflow.db.ready").exists() else []
        if found and "trainpipe.heartbeat" in found[0].data.tags:
            return found[0]
        time.sleep(0.2)
    raise AssertionError("no heartbeat tag in MLflow")


@pytest.fixture
def pipeline(bc_config, tmp_path):
    bc_config["model"]["params"]["n_estimators"] = 10
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(bc_config))
    return path


@pytest.mark.extended
def test_a_sigkilled_run_is_dead_for_runs_list_gc_marks_it_killed_once_and_resume_completes(pipeline, store, tmp_path):
    held = hold_in(["run", str(pipeline), "--run-id", "victim"], "train", tmp_path / "mark", env=FAST_BEAT)
    mlflow_run = wait_for_heartbeat_tag(store, "victim")
    assert mlflow_run.info.status == "RUNNING" and "pid" in json.loads(mlflow_run.data.tags["trainpipe.owner"])
    held.send_signal(signal.SIGKILL)  # no handler runs: run.json and MLflow stay as they were
    held.communicate()
    meta = run_meta(store, "victim")
    assert meta["status"] == "running" and meta["owner"]["stage"] == "train"
    assert {"pid", "host", "boot_id", "process_started", "heartbeat_at"} <= set(meta["owner"])

    code, listed = run_cli_json("runs", "list", "--store", str(store))
    assert code == 0 and [(r["run_id"], r["liveness"]) for r in listed["runs"]] == [("victim", "dead")]
    shown = run_cli("runs", "list", "--store", str(store))
    assert "dead" in shown.stdout

    code, dry = run_cli_json("runs", "gc", "--dry-run", "--store", str(store))
    assert code == 0 and dry["marked"] == 1 and dry["runs"][0]["action"] == "would mark killed"
    assert run_meta(store, "victim")["status"] == "running" and mlflow_runs(store, "victim")[0].info.status == "RUNNING"

    code, done = run_cli_json("runs", "gc", "--store", str(store))
    assert code == 0 and done["marked"] == 1, done
    (entry,) = done["runs"]
    assert entry["action"] == "marked killed" and entry["stage"] == "train" and entry["removed"] == [".train.tmp"]
    meta = run_meta(store, "victim")
    assert meta["status"] == "killed" and meta["resumable"] is True and "owner" not in meta
    assert meta["stages"]["train"]["status"] == "killed" and "trainpipe run --resume victim" in meta["error"]
    assert meta["died"]["stage"] == "train"
    (mlflow_run,) = mlflow_runs(store, "victim")
    assert mlflow_run.info.status == "KILLED" and "died during stage train" in mlflow_run.data.tags["trainpipe.error"]
    assert not leftovers(store)

    code, again = run_cli_json("runs", "repair", "--store", str(store))  # the alias; nothing left to do
    assert code == 0 and again["marked"] == 0 and again["runs"] == [] and again["mlflow"] == []

    code, resumed = run_cli_json("run", "--resume", "victim", "--store", str(store))
    assert code == 0 and resumed["status"] == "completed", resumed
    assert [s["status"] for s in resumed["stages"]][:4] == ["reused"] * 4  # finished before the kill: kept
    assert run_meta(store, "victim")["status"] == "completed"
    assert_store_consistent(store)


def test_resume_of_a_run_whose_process_is_alive_is_refused_in_one_line(pipeline, store, tmp_path):
    held = hold_in(["run", str(pipeline), "--run-id", "alive"], "features", tmp_path / "mark", env=FAST_BEAT)
    try:
        first = run_meta(store, "alive")["owner"]["heartbeat_at"]
        deadline = time.monotonic() + 60  # beats every 0.3 s; a loaded machine may delay a few
        while (meta := run_meta(store, "alive"))["owner"]["heartbeat_at"] <= first:
            assert time.monotonic() < deadline, "the heartbeat thread never refreshed run.json"
            time.sleep(0.1)
        assert meta["owner"]["pid"] == held.pid and meta["owner"]["stage"] == "features"

        proc = run_cli("run", "--resume", "alive", "--store", str(store))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert f"still running in process {held.pid} on {socket.gethostname()}" in lines[0]
        assert "Traceback" not in proc.stderr

        code, listed = run_cli_json("runs", "list", "--store", str(store))
        assert [r["liveness"] for r in listed["runs"]] == ["alive"]
        code, gc = run_cli_json("runs", "gc", "--store", str(store))
        assert code == 0 and gc["marked"] == 0 and run_meta(store, "alive")["status"] == "running"
    finally:
        held.send_signal(signal.SIGKILL)
        held.communicate()
    assert run_cli_json("runs", "gc", "--store", str(store))[1]["marked"] == 1  # dead now: marked


@pytest.mark.extended
def test_a_run_owned_by_a_live_process_on_another_machine_is_refused_and_a_stale_one_recovered(pipeline, store):
    """A store shared by two machines: the run lock (flock) is per machine, the heartbeat is not."""
    code, doc = run_cli_json("stage", "ingest", "--run", "remote", "--config", str(pipeline))
    assert code == 0, doc
    path = store / "runs" / "remote" / "run.json"
    meta = json.loads(path.read_text())
    assert meta["status"] == "running" and "owner" not in meta  # between two orchestrated stages: idle, not dead
    assert run_cli_json("runs", "gc", "--store", str(store))[1]["marked"] == 0
    meta["owner"] = {"pid": 4242, "host": "another-machine", "boot_id": "x", "process_started": 1.0,
                     "since": time.time() - 5, "heartbeat_at": time.time() - 2, "stage": "evaluate"}
    path.write_text(json.dumps(meta))
    for args in (("run", "--resume", "remote"), ("stage", "validate", "--run", "remote")):
        proc = run_cli(*args, "--store", str(store))
        assert proc.returncode == 2 and "still running in process 4242 on another-machine" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1

    meta["owner"]["heartbeat_at"] = time.time() - 600  # that machine stopped beating ten minutes ago
    path.write_text(json.dumps(meta))
    code, gc = run_cli_json("runs", "gc", "--store", str(store))
    assert code == 0 and gc["runs"][0]["reason"].endswith("no heartbeat for over 90 s")
    assert run_meta(store, "remote")["status"] == "killed"


@pytest.mark.reliability  # a tune and a resume: minutes on a busy machine
def test_the_pipeline_run_of_a_killed_tune_is_marked_killed_and_resumes(bc_config, tmp_path, store):
    bc_config["model"]["params"]["n_estimators"] = 10
    bc_config["tuning"] = {"n_trials": 3, "plots": False, "heartbeat_interval": 1, "grace_period": 2,
                           "space": {"max_depth": {"type": "int", "low": 2, "high": 4}}}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(bc_config))
    held = hold_in(["tune", str(path)], "tune", tmp_path / "mark", env=FAST_BEAT)
    (run_id,) = [p.name for p in (store / "runs").iterdir()]
    wait_for_heartbeat_tag(store, run_id)
    held.send_signal(signal.SIGKILL)
    held.communicate()
    code, gc = run_cli_json("runs", "gc", "--store", str(store))
    assert code == 0 and [(r["run_id"], r["stage"]) for r in gc["runs"]] == [(run_id, "tune")]
    assert run_meta(store, run_id)["status"] == "killed"
    assert mlflow_runs(store, run_id)[0].info.status == "KILLED"
    code, resumed = run_cli_json("run", "--resume", run_id, "--store", str(store), timeout=300)
    assert code == 0 and resumed["status"] == "completed", resumed
    assert_store_consistent(store)
