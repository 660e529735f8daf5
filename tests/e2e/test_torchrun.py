"""The train stage on a real torchrun: 2 CPU processes (gloo, one thread each) against one process.

A run is prepared up to `features` in this process (the runs share those stages through the cache);
`trainpipe stage train` then runs as a real subprocess that starts `python -m torch.distributed.run`
(training.distributed.nproc_per_node: 2). The victim run's config names the pausing callback of tests/e2e/step_hooks.py; under torchrun callbacks run on rank 0, so rank 0 pauses at a
step while rank 1 waits for it in the next step's all-reduce, and the test signals or kills at exact points.

Tolerance, 2 processes against 1 with the same global batch (64 rows): the windows and their row order are
the same, but each rank sums its half of a window and the all-reduce adds the halves, so float32 sums are
ordered differently: weights agree to 1e-5 (seen: 2e-7), per-epoch losses to a relative 1e-6. Dropout is off:
each rank draws its own masks, so with dropout the runs are equal in distribution only.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import torch as torch
import psutil as psutil

from tests.e2e import step_hooks
from trainpipe.config import load_config
from trainpipe.pipeline.driver import run_one_stage
from trainpipe.store import Store

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEPS_PER_EPOCH = 33  # ceil(2100 train rows / 64); the last window has 52 rows: 26 per rank


def make_config(data_dir: Path, store: Path, nproc: int, callbacks: tuple[str, ...] = ()) -> dict:
    return {"name": "churn-ddp", "task": "binary", "store": str(store),
            "data": {"path": str(data_dir / "churn.csv"), "target": "churn", "id_column": "customer_id"},
            "model": {"type": "torch_mlp", "params": {"epochs": 2, "hidden_dims": [16], "batch_size": 64,
                                                      "dropout": 0.0, "lr": 0.01}},
            "training": {"threads": 1, "checkpoint": {"every_steps": 5, "keep_last": 2},
                         "distributed": {"nproc_per_node": nproc, "backend": "gloo"}, "callbacks": list(callbacks)}}


def prepared(folder: Path, data_dir: Path, run_id: str, nproc: int, callbacks: tuple[str, ...] = ()) -> Path:
    """A run whose stages up to features are done (in this process); returns its folder."""
    path = folder / f"{run_id}.yaml"
    path.write_text(yaml.safe_dump(make_config(data_dir, folder / "store", nproc, callbacks)))
    config = load_config(path, [])
    store = Store.locate(config.store)
    for name in ("ingest", "validate", "split", "features"):
        run_one_stage(store, run_id, name, config if name == "ingest" else None)
    return store.run_dir(run_id)


def train_args(run: Path) -> list[str]:
    """`trainpipe stage train` on `run`, never reusing another run's model (the runs share one config)."""
    return ["stage", "train", "--run", run.name, "--store", str(run.parents[1]), "--no-cache"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainpipe", *args], capture_output=True, text=True, timeout=300,
                          check=False, env=step_hooks.env())


def _paused(args: list[str], step_file: Path, step: int) -> subprocess.Popen:
    """Start `trainpipe ...` whose rank 0 pauses after optimizer step `step`; return once it is there."""
    step_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "trainpipe", *args], env=step_hooks.env(step_file, step),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if step_file.exists() and step_file.read_text() == str(step):
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before step {step}:\n{proc.stderr.read()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"step {step} never came")


def _rank_process(launcher: subprocess.Popen, rank: int) -> psutil.Process:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if "trainpipe.pipeline.train_worker" in " ".join(child.cmdline()) and child.environ().get("RANK") == str(rank):
                return child
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no process of rank {rank} under {launcher.pid}")


def weights(run: Path) -> dict:
    return torch.load(run / "train" / "model" / "model.pt", weights_only=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """One process (in this process) and two processes (a real torchrun), same config otherwise."""
    folder = tmp_path_factory.mktemp("torchrun")
    one = prepared(folder, data_dir, "one", 1)
    run_one_stage(Store(one.parents[1]), "one", "train")
    two = prepared(folder, data_dir, "two", 2, callbacks=(step_hooks.REFERENCE,))  # not pausing: no $STEP_HOOK_FILE
    proc = _cli(*train_args(two))
    assert proc.returncode == 0, proc.stderr
    return one, two, folder, proc


def test_two_processes_train_the_one_process_model_within_float_tolerance(runs):
    one, two, _, proc = runs
    ours, theirs = weights(two), weights(one)
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-5, rtol=0)
    h2, h1 = (json.loads((run / "train" / "history.json").read_text()) for run in (two, one))
    assert len(h2["train_loss"]) == 2
    for key in ("train_loss", "validation_loss", "validation_accuracy"):
        assert h2[key] == pytest.approx(h1[key], rel=1e-6), key
    # the console shows rank 0's epoch lines; torchrun's own messages go to the log next to the checkpoints
    # (torchrun's OMP_NUM_THREADS notice only appears when the variable is unset, so the log is checked by the
    # ranks' prefixed lines, which only torchrun writes)
    assert "epoch 2/2" in proc.stderr and "[default0]:" not in proc.stderr
    assert "[default0]:epoch 2/2" in (two / "checkpoints" / "train" / "torchrun.log").read_text()
    assert not (two / "train" / "fitted.json").exists()


@pytest.mark.extended
def test_sigterm_then_a_killed_rank_then_resume_equals_the_uninterrupted_two_process_run(runs, data_dir):
    _, two, folder, _ = runs
    run = prepared(folder, data_dir, "victim", 2, callbacks=(step_hooks.REFERENCE,))
    step_file = folder / "step"
    # SIGTERM to the launcher: every rank finishes the step after the pause, rank 0 checkpoints it, exit 143
    proc = _paused(train_args(run), step_file, 12)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "preempted by SIGTERM" in stderr and "Traceback" not in stderr
    assert json.loads((run / "run.json").read_text())["status"] == "killed"
    # resumed, then rank 1 dies (SIGKILL) while rank 0 is paused: the stage fails with one line, exit 2
    proc = _paused(train_args(run), step_file, STEPS_PER_EPOCH + 4)
    _rank_process(proc, 1).kill()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "rank 1 of 2 was killed by SIGKILL" in errors[0], stderr
    assert "Traceback" not in stderr
    # resumed again: the same weights, bit for bit, as the run nobody interrupted
    final = _cli(*train_args(run))
    assert final.returncode == 0, final.stderr
    assert "resuming from" in final.stderr
    ours, theirs = weights(run), weights(two)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs), "weights differ from the uninterrupted run"
    assert (run / "train" / "history.json").read_text() == (two / "train" / "history.json").read_text()
