"""`trainpipe run` with `training.distributed.dask.cluster: local`: the train stage starts a LocalCluster of
2 worker processes, trains on it and stops it; everything after train is the one-process pipeline's.

Worker processes are spawned by the trainpipe process with its working folder, so "no worker left behind"
is: no process whose working folder is this test's own temporary folder once the command has ended.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

import distributed  # noqa: F401  the Dask extra (trainpipe[dask]): make setup installs it

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def processes_in(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        if proc.info["cwd"] == str(folder) and proc.pid != os.getpid():
            found.append(proc)
    return found


def dask_config(bc_config: dict, **params) -> dict:
    bc_config["model"] = {"type": "lightgbm", "params": {"n_estimators": 200, "num_leaves": 8, **params}}
    bc_config["training"]["distributed"] = {"dask": {"cluster": "local", "n_workers": 2}}
    return bc_config


@pytest.mark.extended
def test_sigterm_stops_the_dask_workers_and_the_resumed_run_registers_a_model_that_predicts_what_evaluate_scored(
        bc_config, write_config, store, data_dir, tmp_path, cli_json):
    path = write_config(dask_config(bc_config))
    proc = subprocess.Popen([sys.executable, "-m", "trainpipe", "run", str(path), "--run-id", "victim"], cwd=tmp_path,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 120
    workers: list[psutil.Process] = []
    while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        workers = [p for p in processes_in(tmp_path) if p.pid != proc.pid]
    assert len(workers) >= 2, f"no Dask workers appeared (exit {proc.poll()})"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers still running after SIGTERM: {[p.pid for p in alive]}"
    meta = json.loads((store / "runs" / "victim" / "run.json").read_text())
    assert meta["status"] == "killed" and meta["resumable"], meta

    code, summary = cli_json("run", "--resume", "victim", "--store", str(store), cwd=tmp_path)
    assert code == 0 and summary["status"] == "completed", summary
    assert not processes_in(tmp_path), "worker processes outlived the run"
    run_dir = Path(summary["run_dir"])
    train = json.loads((run_dir / "train" / "manifest.json").read_text())["summary"]
    assert train["stopped_early"] and train["best_iteration"] is not None, train  # early stopping on Dask
    history = json.loads((run_dir / "train" / "history.json").read_text())
    assert len(history["validation_log_loss"]) == train["iterations"] < 200

    # the registered package (no Dask in it) scores the test rows as evaluate did
    code, predicted = cli_json("predict", "models:/bc@champion", str(data_dir / "bc.parquet"), "--out",
                               str(tmp_path / "pred.parquet"), "--store", str(store))
    assert code == 0, predicted
    with np.load(run_dir / "split" / "split.npz") as split:
        test_rows = split["test"]
    out = pd.read_parquet(tmp_path / "pred.parquet")
    evaluated = np.load(run_dir / "evaluate" / "test_scores.npy")
    np.testing.assert_allclose(out[["proba_benign", "proba_malignant"]].to_numpy()[test_rows], evaluated, rtol=1e-6)
