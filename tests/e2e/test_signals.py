"""SIGTERM and SIGINT outside the torch loop, through real `trainpipe` processes.

Whatever stage a signal lands in, the run must end as killed: exit 143 (SIGTERM) or 130 (SIGINT),
run.json `killed` and resumable, the MLflow run KILLED, the stage's temporary folder gone, and
`--resume` (or the same `trainpipe stage` again) must then complete the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.e2e import step_hooks
from trainpipe.config import config_from_dict
from trainpipe.pipeline.driver import run_pipeline
from trainpipe.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROUNDS = 3000  # about 5 s of boosting on the breast-cancer table with one thread: long enough to land in


@pytest.fixture
def long_xgb(bc_config, tmp_path) -> Path:
    """bc_config boosting ROUNDS rounds with no early stopping, written to a file."""
    bc_config["model"]["params"] = {"n_estimators": ROUNDS, "max_depth": 3, "learning_rate": 0.001}
    bc_config["training"]["early_stopping_rounds"] = None
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(bc_config))
    return path


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trainpipe", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "200"})


def wait_until_boosting(proc: subprocess.Popen, run_dir: Path, timeout: float = 120) -> None:
    """Return once the train stage's temporary folder exists and libxgboost is loaded in the process, plus a
    second: the 397-row DMatrix is built in milliseconds, so by then the process is inside xgb.train's loop."""
    deadline = time.monotonic() + timeout
    maps = Path(f"/proc/{proc.pid}/maps")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before training:\n{proc.stderr.read()}")
        if (run_dir / ".train.tmp").is_dir() and (not maps.parent.exists() or "libxgboost" in maps.read_text()):
            time.sleep(1.0)
            assert proc.poll() is None, "training ended before the signal: raise ROUNDS"
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the train stage never started")


def signal_and_time(proc: subprocess.Popen, run_dir: Path, signum: int) -> float:
    """Send `signum`; return the seconds until the stage gave up its temporary folder (the process may take
    longer to exit: it still finishes the MLflow run)."""
    started = time.monotonic()
    proc.send_signal(signum)
    while (run_dir / ".train.tmp").exists() and proc.poll() is None:
        time.sleep(0.01)
    return time.monotonic() - started


def train_seconds(run_dir: Path) -> float:
    return json.loads((run_dir / "train" / "manifest.json").read_text())["seconds"]


def mlflow_status(store: Path, run_id: str) -> str:
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    (found,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                  f"tags.`trainpipe.run_id` = '{run_id}'")
    return found.info.status


def assert_killed_cleanly(store: Path, run_id: str, stage: str, signal_name: str, again: str) -> None:
    run_dir = store / "runs" / run_id
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "killed" and meta["resumable"] is True, meta
    assert meta["stages"][stage]["status"] == "killed"
    assert f"stopped by {signal_name} during stage {stage}" in meta["error"] and again in meta["error"], meta["error"]
    leftovers = sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.name.endswith(".tmp"))
    assert not leftovers, leftovers
    assert not (run_dir / stage).exists() and not (run_dir / f"{stage}.failed").exists()
    assert not (store / "cache" / "index" / stage).exists()
    assert mlflow_status(store, run_id) == "KILLED"


@pytest.mark.parametrize("signum, code", [pytest.param(signal.SIGTERM, 143, marks=pytest.mark.extended),
                                          pytest.param(signal.SIGINT, 130, marks=pytest.mark.extended)],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_xgboost_training_kills_the_run_cleanly_and_resume_completes(signum, code, long_xgb, store):
    run_dir = store / "runs" / "victim"
    proc = start("run", str(long_xgb), "--run-id", "victim")
    wait_until_boosting(proc, run_dir)
    stopped_after = signal_and_time(proc, run_dir, signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and "trainpipe run --resume victim" in lines[0], stderr
    assert_killed_cleanly(store, "victim", "train", signal.Signals(signum).name, "trainpipe run --resume victim")

    resumed = subprocess.run([sys.executable, "-m", "trainpipe", "run", "--resume", "victim", "--store", str(store),
                              "--json"], capture_output=True, text=True, timeout=240, check=False)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "completed"
    assert {s["name"]: s["status"] for s in summary["stages"]}["train"] == "completed"
    assert mlflow_status(store, "victim") == "FINISHED"
    # signalled a second into boosting, it stopped within a round: well before training would have ended
    assert stopped_after < train_seconds(run_dir) / 2, (stopped_after, train_seconds(run_dir))


@pytest.mark.extended
def test_stage_train_under_sigterm_exits_143_and_running_it_again_completes(long_xgb, store):
    config = config_from_dict(yaml.safe_load(long_xgb.read_text()))
    run_pipeline(config, Store.locate(config.store), run_id="staged", until="features")
    args = ("stage", "train", "--run", "staged", "--store", str(store))
    proc = start(*args)
    wait_until_boosting(proc, store / "runs" / "staged")
    stopped_after = signal_and_time(proc, store / "runs" / "staged", signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "trainpipe stage train --run staged" in stderr
    assert_killed_cleanly(store, "staged", "train", "SIGTERM", "trainpipe stage train --run staged")

    again = subprocess.run([sys.executable, "-m", "trainpipe", *args], capture_output=True, text=True, timeout=240,
                           check=False)
    assert again.returncode == 0, again.stderr
    meta = json.loads((store / "runs" / "staged" / "run.json").read_text())
    assert meta["stages"]["train"]["status"] == "completed" and meta["status"] == "running"  # evaluate is next
    assert stopped_after < train_seconds(store / "runs" / "staged") / 2


def test_ctrl_c_during_torch_training_exits_130_marks_the_run_killed_and_resume_completes(data_dir, store, tmp_path):
    """SIGINT inside the torch loop, whose own SIGTERM handler is active meanwhile: the two compose."""
    import torch  # noqa: F401
    doc = {"name": "churn-mlp", "task": "binary", "store": str(store),
           "data": {"path": str(data_dir / "churn.csv"), "target": "churn", "id_column": "customer_id"},
           "model": {"type": "torch_mlp", "params": {"epochs": 2, "hidden_dims": [8], "batch_size": 128}},
           "training": {"threads": 1, "checkpoint": {"every_steps": 5}, "callbacks": [step_hooks.REFERENCE]}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    step_file = tmp_path / "step"
    proc = subprocess.Popen([sys.executable, "-m", "trainpipe", "run", str(path), "--run-id", "mlp"],
                            env=step_hooks.env(step_file, 12),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (step_file.exists() and step_file.read_text() == "12"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert_killed_cleanly(store, "mlp", "train", "SIGINT", "trainpipe run --resume mlp")
    assert (store / "runs" / "mlp" / "checkpoints" / "train").is_dir()  # checkpoints survive the kill

    resumed = subprocess.run([sys.executable, "-m", "trainpipe", "run", "--resume", "mlp", "--store", str(store)],
                             capture_output=True, text=True, timeout=240, check=False, env=step_hooks.env())
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr  # training continued from the checkpoint written before Ctrl-C
    assert json.loads((store / "runs" / "mlp" / "run.json").read_text())["status"] == "completed"
