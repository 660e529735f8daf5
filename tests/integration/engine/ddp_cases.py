"""Run by a real torchrun (2 processes, gloo) from test_ddp_agreement.py: decisions one rank makes reach the other.

Each case writes one JSON line per rank to the file named by argv[1]. Cases, in one job, one after another:
- release: rank 0 ends without training (as a stage reused from the cache does) while rank 1 starts its fit;
- nan_on_rank_1: only rank 1's 5th micro-batch has a NaN loss; max_bad_batches 0 must stop both ranks;
- stop_on_rank_0: a report hook (pruning) that runs on rank 0 only asks to stop after epoch 1.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from trainpipe.engine.batches import TensorBatches
from trainpipe.engine.config import EngineParams
from trainpipe.engine.distributed import NothingToTrain, this_process
from trainpipe.engine.fit import fit_torch
from trainpipe.engine.loop import TrainingDiverged
from trainpipe.models.base import FitContext


def data() -> tuple[TensorBatches, TensorBatches]:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(300, 4, generator=g)
    y = (X[:, 0] + X[:, 1] > 0).float()
    return TensorBatches(X[:240], y[:240]), TensorBatches(X[240:], y[240:])


def build() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def fit(loss_fn, report=None):
    train, val = data()
    params = EngineParams(epochs=3, batch_size=32, lr=0.01, device="cpu")
    metrics = lambda out, y: {"accuracy": float(((out.squeeze(1) > 0).float() == y).float().mean())}
    return fit_torch(build, loss_fn, metrics, params, train, val, seed=1, threads=1, options=FitContext(backend="gloo"),
                     patience=None, report=report)


def bce(out, y):
    return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), y)


def main() -> None:
    out, dist = Path(sys.argv[1]), this_process()
    lines = []
    if dist.is_main:  # release: rank 0 has nothing to train
        dist.release_waiting("gloo", "cpu")
        lines.append({"case": "release", "rank": 0, "released": True})
    else:
        try:
            fit(bce)
            lines.append({"case": "release", "rank": 1, "released": False})
        except NothingToTrain:
            lines.append({"case": "release", "rank": 1, "released": True})

    calls = [0]

    def nan_on_rank_1(out, y):
        calls[0] += 1
        loss = bce(out, y)
        return loss * math.nan if dist.rank == 1 and calls[0] == 5 else loss

    try:
        fit(nan_on_rank_1)
        lines.append({"case": "nan_on_rank_1", "rank": dist.rank, "error": None})
    except TrainingDiverged as exc:
        lines.append({"case": "nan_on_rank_1", "rank": dist.rank, "error": exc.message})

    _, result = fit(bce, report=lambda epoch, values: True)
    lines.append({"case": "stop_on_rank_0", "rank": dist.rank, "epochs": result.epochs,
                  "stopped_early": result.stopped_early})
    with out.open("a") as f:
        f.write("".join(json.dumps(line) + "\n" for line in lines))


if __name__ == "__main__":
    main()
