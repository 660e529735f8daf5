"""Batch sources: every row once per epoch, a seeded order, and resume points that replay exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import torch as torch

from trainpipe.engine.batches import ParquetBatches, TensorBatches
from trainpipe.engine.callbacks import Callback
from trainpipe.engine.checkpoint import CheckpointStore
from trainpipe.engine.config import CheckpointConfig, EngineParams
from trainpipe.engine.loop import Trainer


@pytest.fixture
def parquet(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=1000).astype(np.float32), "b": rng.normal(size=1000).astype(np.float32),
                          "id": np.arange(1000, dtype=np.int64)})
    frame["y"] = (frame["a"] > 0).astype(np.float32)
    path = tmp_path / "t.parquet"
    frame.to_parquet(path, row_group_size=90, index=False)  # 12 row groups, the last one short
    return path


def source(path, buffer_rows=250):
    return ParquetBatches(path, [(["a", "b"], torch.float32), (["id"], torch.int64), (["y"], torch.float32)], buffer_rows)


def test_parquet_epoch_visits_every_row_once_in_a_seeded_order(parquet):
    data = source(parquet)
    ids = [torch.cat([b[1][:, 0] for b in data.windows(0, e, data.permutation(0, e), 0, 64)]) for e in (0, 0, 1)]
    assert sorted(ids[0].tolist()) == list(range(1000))
    assert torch.equal(ids[0], ids[1]) and not torch.equal(ids[0], ids[2])
    assert not torch.equal(ids[0], torch.arange(1000))  # shuffled across row groups, not file order


def test_parquet_windows_from_a_resume_point_are_the_tail_of_the_epoch(parquet):
    data = source(parquet)
    order = data.permutation(3, 2)
    full = list(data.windows(3, 2, order, 0, 64))
    tail = list(data.windows(3, 2, order, 64 * 5, 64))
    assert len(tail) == len(full) - 5
    assert all(torch.equal(x, y) for a, b in zip(full[5:], tail) for x, y in zip(a, b))


class IdsFree(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(2, 1)

    def forward(self, x, ids):
        return self.lin(x)


def bce(out, y):
    return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), y)


def test_training_from_parquet_resumes_bit_identically(parquet, tmp_path):
    class Stop(Exception):
        pass

    class StopAt(Callback):
        def on_step_end(self, trainer):
            if trainer.step == 22:
                raise Stop

    params = EngineParams(epochs=2, batch_size=64, lr=0.05)
    val = TensorBatches(torch.zeros(10, 2), torch.zeros(10, 1, dtype=torch.int64), torch.zeros(10))
    straight = Trainer(IdsFree(), bce, lambda o, y: {}, params, seed=1, threads=1)
    straight.fit(source(parquet), val)
    store = CheckpointStore(tmp_path / "ckpt", "h")
    with pytest.raises(Stop):
        Trainer(IdsFree(), bce, lambda o, y: {}, params, seed=1, threads=1, store=store,
                checkpoint=CheckpointConfig(every_steps=4), callbacks=[StopAt()]).fit(source(parquet), val)
    # the Parquet position is the Trainer's cursor state: epoch 2 (16 windows of ≤ 64 rows in epoch 1), 4 windows in
    saved = store.latest()["cursor"]
    assert (saved["epoch"], saved["pos"]) == (1, 4 * 64)
    assert torch.equal(saved["order"], source(parquet).permutation(1, 1))  # the epoch's row-group order
    resumed = Trainer(IdsFree(), bce, lambda o, y: {}, params, seed=1, threads=1, store=store,
                      checkpoint=CheckpointConfig(every_steps=4))
    resumed.fit(source(parquet), val)
    assert all(torch.equal(a, b) for a, b in zip(straight.module.state_dict().values(),
                                                  resumed.module.state_dict().values()))
    assert resumed.history == straight.history
