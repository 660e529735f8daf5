"""`trainpipe tune` whose trials are DDP jobs: a real torchrun of 2 gloo CPU processes per trial.

The search is made deterministic so that the pruner must act: a grid over the learning rate with the same seed
(so the same initial weights) for every trial, and a median pruner that may prune from the first epoch once one
trial completed. A trial with a learning rate of 1e-6 barely moves its validation loss, so after a trial with
0.05 completed, any later 1e-6-ish trial is worse than the median at epoch 0 and is pruned there; the next trial
starts after it. Each rank writes the trials it trained (tune/ranks/worker-0.rank-R.jsonl), which proves that
both ranks trained the same parameters and that the pruned trial ended on rank 1 at the epoch rank 0 stopped.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

import torch  # noqa: F401
import psutil as psutil

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EPOCHS = 3
RATES = [0.000001, 0.05, 0.000002, 0.000003]


def ddp_tune_config(data_dir: Path, store: Path) -> dict:
    return {"name": "bcddp", "task": "binary", "store": str(store),
            "data": {"path": str(data_dir / "bc.parquet"), "target": "diagnosis", "positive_class": "malignant"},
            "model": {"type": "torch_mlp", "params": {"epochs": EPOCHS, "hidden_dims": [8], "batch_size": 64,
                                                      "dropout": 0.0}},
            "training": {"early_stopping_rounds": None, "threads": 2, "distributed": {"backend": "gloo"}},
            "tuning": {"trial_world_size": 2, "n_trials": len(RATES), "plots": False, "sampler": {"type": "grid"},
                       "space": {"lr": {"type": "categorical", "choices": RATES}},
                       "pruner": {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0,
                                  "interval_steps": 1}}}


def rank_records(run_dir: Path) -> dict[int, dict[int, dict]]:
    """rank -> trial number -> what that rank recorded of the trial."""
    out: dict[int, dict[int, dict]] = {}
    for path in sorted((run_dir / "tune" / "ranks").glob("worker-0.rank-*.jsonl")):
        for line in path.read_text().splitlines():
            doc = json.loads(line)
            out.setdefault(doc["rank"], {})[doc["trial"]] = doc
    return out


@pytest.mark.extended
def test_ddp_trials_train_the_same_parameters_on_both_ranks_and_a_pruned_trial_ends_on_both(data_dir, store,
                                                                                             write_config):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "trainpipe", "tune", str(write_config(ddp_tune_config(data_dir, store))),
                           "--json"], capture_output=True, text=True, timeout=180, check=False)  # a hang fails here
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["study"]["finished"] == len(RATES) and doc["status"] == "completed"

    study = optuna.load_study(study_name=doc["study"]["study"], storage=f"sqlite:///{store}/optuna.db")
    states = {t.number: t.state.name for t in study.trials}
    pruned = sorted(n for n, s in states.items() if s == "PRUNED")
    assert sorted(states) == list(range(len(RATES))) and pruned and "COMPLETE" in states.values(), states
    assert max(states) > pruned[0]  # a trial started after the pruned one

    records = rank_records(Path(doc["run_dir"]))
    assert set(records) == {0, 1} and set(records[0]) == set(records[1]) == set(states)
    for number, trial in enumerate(study.trials):
        assert records[0][number]["params"] == records[1][number]["params"]  # rank 0 broadcast what it sampled
        assert records[1][number]["params"]["lr"] == trial.params["lr"]
        trained = trial.user_attrs["trainpipe"]["iterations"]  # rank 0's epochs
        assert records[1][number]["iterations"] == trained, (number, records[1][number], trial.user_attrs)
        assert records[1][number]["stopped_early"] == (trial.state.name == "PRUNED")
    assert all(records[1][n]["iterations"] < EPOCHS for n in pruned)  # stopped on rank 1 too, where rank 0 did
    assert not list(Path(doc["run_dir"], "tune").glob("worker-[1-9]*"))  # one worker, as asked
    print(f"ddp tune: {len(RATES)} trials, {len(pruned)} pruned, {elapsed:.1f} s")


def in_a_trial(store: Path) -> bool:
    """Rank 0 of worker 0 announced a trial (its record, in the tune stage's folder while the stage runs)."""
    return any(store.glob("runs/*/.tune.tmp/ranks/worker-0.rank-0.jsonl"))


@pytest.mark.reliability
@pytest.mark.parametrize("signum, code", [(signal.SIGKILL, -9), (signal.SIGTERM, 143)])
def test_killing_tune_mid_ddp_trial_leaves_no_torchrun_or_rank_behind(signum, code, data_dir, store, write_config):
    config = ddp_tune_config(data_dir, store)
    config["model"]["params"]["epochs"] = 500  # a trial far longer than the test: the signal lands inside it
    config["tuning"].update(pruner={"type": "none"})
    proc = subprocess.Popen([sys.executable, "-m", "trainpipe", "tune", str(write_config(config))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not in_a_trial(store):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    time.sleep(1.0)  # inside the first epochs: ranks in their all-reduces
    family = psutil.Process(proc.pid).children(recursive=True)
    assert len([p for p in family if "trainpipe.stages.tune" in " ".join(p.cmdline())]) >= 3  # torchrun + 2 ranks
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == code
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, [" ".join(p.cmdline()) for p in alive]
