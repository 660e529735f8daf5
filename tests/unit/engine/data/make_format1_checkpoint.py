"""How format1-ckpt-000000010.pt was written: by trainpipe at commit 88f10fe (checkpoint format 1, the flat dict).

    git worktree add --detach /tmp/old 88f10fe
    PYTHONPATH=/tmp/old .venv/bin/python tests/unit/engine/data/make_format1_checkpoint.py

The run (tests/unit/engine/test_state.py repeats it with the current code): 240 rows × 4 features, a small
MLP with dropout, 3 epochs of 8 steps, cosine schedule with warmup, patience 2, a checkpoint every 5 steps,
stopped at step 12; the file kept is step 10's (epoch 2, 64 rows in, best weights and RNG states inside).
"""

from pathlib import Path

import torch

from trainpipe.engine.batches import TensorBatches
from trainpipe.engine.checkpoint import CheckpointStore
from trainpipe.engine.config import CheckpointConfig, EngineParams
from trainpipe.engine.loop import Callback, Trainer

HERE = Path(__file__).resolve().parent


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x)


class Stop(Exception):
    pass


def stop(step):
    if step == 12:
        raise Stop


def main() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 4, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).float()
    train, val = TensorBatches(X[:240], y[:240]), TensorBatches(X[240:], y[240:])
    params = EngineParams(epochs=3, batch_size=32, lr=0.05, schedule="cosine", warmup_steps=3)
    folder = HERE / "tmp-format1"
    store = CheckpointStore(folder, "h", keep_last=1)
    bce = lambda out, t: torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), t)
    trainer = Trainer(Net(), bce, lambda o, t: {}, params, seed=3, threads=1, patience=2, store=store,
                      checkpoint=CheckpointConfig(every_steps=5), callbacks=[Callback(on_step_end=stop)])
    try:
        trainer.fit(train, val)
    except Stop:
        pass
    store.path(10).rename(HERE / "format1-ckpt-000000010.pt")
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
