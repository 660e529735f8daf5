"""Kill a real `trainpipe run` mid-training (SIGKILL, SIGTERM) and resume: the result must be bit-identical.

The victim run's config names a training callback (tests/e2e/step_hooks.py, through `training.callbacks`) that
announces steps and pauses at one; the test then signals the paused process, so kill points are exact. The
reference run has no callback: the weights match, so the callback changed nothing that is computed.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import torch as torch

from tests.e2e import step_hooks
from trainpipe.engine.checkpoint import CheckpointStore

STEPS = 99  # 3 epochs × ceil(2100 train rows / 64)


def make_config(data_dir: Path, store: Path, callbacks: tuple[str, ...] = ()) -> dict:
    config = {"name": "churn-mlp", "task": "binary", "store": str(store),
            "data": {"path": str(data_dir / "churn.csv"), "target": "churn", "id_column": "customer_id"},
            "model": {"type": "torch_mlp", "params": {"epochs": 3, "hidden_dims": [16], "batch_size": 64, "dropout": 0.1,
                                                      "lr": 0.01, "schedule": "cosine", "warmup_steps": 5}},
            "training": {"early_stopping_rounds": 2, "threads": 1, "checkpoint": {"every_steps": 7, "keep_last": 2}}}
    if callbacks:
        config["training"]["callbacks"] = list(callbacks)
    return config


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """An uninterrupted run with the same seed."""
    folder = tmp_path_factory.mktemp("reference")
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(make_config(data_dir, folder / "store")))
    proc = _cli("run", str(path), "--run-id", "ref")
    run = folder / "store" / "runs" / "ref"
    assert (run / "evaluate" / "metrics.json").exists(), proc.stderr
    return run, proc  # tests check its exit code last, after what they compare with it


def _cli(*args):
    """`trainpipe ...` to the end, with the step hook importable but not pausing."""
    return subprocess.run([sys.executable, "-m", "trainpipe", *args], capture_output=True, text=True, timeout=240,
                          check=False, env=step_hooks.env())


def _paused(args: list[str], step_file: Path, step: int) -> subprocess.Popen:
    """Start `trainpipe ...` that pauses after optimizer step `step`; return once it is there."""
    step_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "trainpipe", *args], env=step_hooks.env(step_file, step),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if step_file.exists() and step_file.read_text() == str(step):
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before step {step}:\n{proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"step {step} never came")


def _kill_points(seed: int, n: int) -> list[int]:
    return sorted(random.Random(seed).sample(range(2, STEPS), n))


def assert_same_result(run: Path, reference: Path) -> None:
    ours = torch.load(run / "train" / "model" / "model.pt", weights_only=True)
    theirs = torch.load(reference / "train" / "model" / "model.pt", weights_only=True)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), "weights differ from the uninterrupted run"
    assert (run / "train" / "history.json").read_text() == (reference / "train" / "history.json").read_text()
    assert json.loads((run / "evaluate" / "metrics.json").read_text()) == \
        json.loads((reference / "evaluate" / "metrics.json").read_text())


def mlflow_history(run: Path, key: str):
    """(steps, values) of one metric of the run's MLflow run, in step order."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run.parents[1] / 'mlflow.db'}")
    # by tag: run.json learns the MLflow id only between stages, and these checks happen inside `train`
    found = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               f"tags.`trainpipe.run_id` = '{run.name}'")
    if not found:
        return [], []
    points = sorted(client.get_metric_history(found[0].info.run_id, key), key=lambda m: (m.step, m.timestamp))
    return [m.step for m in points], [m.value for m in points]


def assert_checkpoints_pruned(run: Path, keep_last: int = 2) -> None:
    store = CheckpointStore(run / "checkpoints" / "train", "any")
    steps = store.steps()
    newest = CheckpointStore.read(store.path(steps[-1]))
    best = newest["stopping"]["best_step"]
    assert best in steps, "the best checkpoint was deleted"
    assert set(steps) == set(steps[-keep_last:]) | {best}, f"kept {steps}, best {best}"


# make test: one interruption (SIGKILL); make extended: two (one SIGKILL, one SIGTERM); make reliability: four
@pytest.mark.parametrize("kills", [1, pytest.param(2, marks=pytest.mark.extended),
                                   pytest.param(4, marks=pytest.mark.reliability)])
def test_sigkill_and_sigterm_at_random_steps_then_resume_is_bit_identical(kills, tmp_path, data_dir, reference):
    """One run interrupted `kills` times (SIGKILL and SIGTERM alternating, seeded random steps), then finished."""
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(make_config(data_dir, tmp_path / "store", callbacks=(step_hooks.REFERENCE,))))
    step_file, run = tmp_path / "step", tmp_path / "store" / "runs" / "victim"
    args = ["run", str(config), "--run-id", "victim"]
    live_seen = False
    for n, step in enumerate(_kill_points(seed=11, n=kills)):
        proc = _paused(args, step_file, step)
        if step > STEPS // 3 and not live_seen:  # in epoch 2 or 3: epoch 1 is in MLflow while training runs
            deadline = time.monotonic() + 30  # the tracking thread may still be busy with earlier stages
            while mlflow_history(run, "history/validation_loss")[0] != [0] and time.monotonic() < deadline:
                time.sleep(0.5)
            assert mlflow_history(run, "history/validation_loss")[0] == [0]
            live_seen = True
        if n % 2 == 0:
            proc.kill()  # SIGKILL: no handler runs; the newest checkpoint at or before `step` is resumed
            proc.communicate()
        else:  # spot preemption: finish the step, checkpoint it, exit 143, marked resumable
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
            assert proc.returncode == 143, stderr
            assert f"step {step}" in stderr and "trainpipe run --resume victim" in stderr
            meta = json.loads((run / "run.json").read_text())
            assert meta["status"] == "killed" and meta["resumable"] is True
            state = CheckpointStore.read(CheckpointStore(run / "checkpoints" / "train", "any").path(step))
            assert state["step"] == state["loop"]["step"] == step  # loadable, and at exactly the preempted step
        args = ["run", "--resume", "victim", "--store", str(tmp_path / "store")]
    final = _cli(*args)
    assert "resuming from" in final.stderr
    assert_same_result(run, reference[0])
    assert_checkpoints_pruned(run)
    assert live_seen
    # every epoch in MLflow exactly once although epochs were sent live by processes that were then killed
    history = json.loads((run / "train" / "history.json").read_text())
    for key in ("train_loss", "validation_loss", "lr"):
        steps, values = mlflow_history(run, f"history/{key}")
        assert steps == list(range(len(history[key]))) and values == pytest.approx(history[key]), key
    assert final.returncode == 0 and reference[1].returncode == 0, final.stderr + reference[1].stderr
