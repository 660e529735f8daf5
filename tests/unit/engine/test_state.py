"""Training state as state_dict(): one list of parts, checkpoints of the previous format resume, misfits are refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import torch as torch

from trainpipe.engine.batches import TensorBatches
from trainpipe.engine.checkpoint import CheckpointMismatch, CheckpointStore
from trainpipe.engine.config import CheckpointConfig, EngineParams
from trainpipe.engine.loop import Trainer
from trainpipe.engine.state import RngBundle

FORMAT_1 = Path(__file__).resolve().parent / "data" / "format1-ckpt-000000010.pt"
PARAMS = EngineParams(epochs=3, batch_size=32, lr=0.05, schedule="cosine", warmup_steps=3)


class Net(torch.nn.Module):
    """The network of data/make_format1_checkpoint.py."""

    def __init__(self, width: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                       torch.nn.Linear(width, 1))

    def forward(self, x):
        return self.net(x)


def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 4, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).float()
    return TensorBatches(X[:240], y[:240]), TensorBatches(X[240:], y[240:])


def bce(out, y):
    return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), y)


def trainer(store=None, module=None, resume_anyway=False) -> Trainer:
    return Trainer(module or Net(), bce, lambda o, y: {}, PARAMS, seed=3, threads=1, patience=2, store=store,
                   checkpoint=CheckpointConfig(every_steps=5), resume_anyway=resume_anyway)


def test_state_dict_has_one_entry_per_stateful_part_and_round_trips(tmp_path):
    train, val = data()
    first = trainer(CheckpointStore(tmp_path, "h"))
    first.fit(train, val)
    state = first.state_dict()
    assert set(state) == {"format", "module", "optimizer", "scheduler", "scaler", "rng", "cursor", "stopping", "loop"}
    assert state["format"] == 2 and state["loop"]["step"] == 24 and state["cursor"]["epoch"] == 3
    second = trainer(CheckpointStore(tmp_path / "other", "h"))
    second.fit(train, val)  # builds optimizer and scheduler
    second.load_state_dict(state)
    again = second.state_dict()
    assert again["loop"] == state["loop"] and again["stopping"]["best_epoch"] == state["stopping"]["best_epoch"]
    assert all(torch.equal(a, b) for a, b in zip(again["module"].values(), state["module"].values()))


def test_rng_bundle_restores_python_numpy_and_torch_draws():
    import random

    import numpy as np

    saved = RngBundle().state_dict()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    RngBundle().load_state_dict(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_a_format_1_checkpoint_resumes_bit_identically(tmp_path):
    """Written by trainpipe before state_dicts (data/make_format1_checkpoint.py): resuming it gives the weights and
    history of an uninterrupted run of the current code."""
    train, val = data()
    straight = trainer()
    straight.fit(train, val)
    shutil.copy(FORMAT_1, tmp_path / "ckpt-000000010.pt")
    resumed = trainer(CheckpointStore(tmp_path, "h"))
    result = resumed.fit(train, val)
    assert result.resumed_from.endswith("ckpt-000000010.pt")
    for (name, a), b in zip(straight.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.equal(a, b), name
    norms = "train_grad_norm"  # its first 10 steps summed by the old code's per-parameter norm: last-bit rounding
    assert {k: v for k, v in resumed.history.items() if k != norms} == {
        k: v for k, v in straight.history.items() if k != norms}
    assert resumed.history[norms] == pytest.approx(straight.history[norms], rel=1e-6)
    assert CheckpointStore.read(tmp_path / "ckpt-000000024.pt")["format"] == 2  # it continues in the new format


def test_an_unknown_format_is_refused_in_one_line(tmp_path):
    train, val = data()
    store = CheckpointStore(tmp_path, "h")
    first = trainer(store)
    first.fit(train, val)
    store.save({**first.state_dict(), "format": 99}, 30, None)
    with pytest.raises(CheckpointMismatch) as err:
        trainer(store).fit(train, val)
    assert "checkpoint format 99" in err.value.message and "delete that folder" in err.value.message
    assert "\n" not in err.value.message


def test_another_architecture_under_resume_anyway_is_refused_naming_the_part(tmp_path):
    train, val = data()
    trainer(CheckpointStore(tmp_path, "old")).fit(train, val)
    with pytest.raises(CheckpointMismatch, match=r"does not fit this model \(module: .*\); delete that folder"):
        trainer(CheckpointStore(tmp_path, "new"), module=Net(width=16), resume_anyway=True).fit(train, val)
