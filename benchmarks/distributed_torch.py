"""PyTorch DDP benchmark: samples/s of trainpipe's engine in 1 process against 2 torchrun processes (gloo, CPU).

Why: `training.distributed.nproc_per_node` must buy speed where there are cores for it, and cost little where
there are not. Both sides run the same engine entry (`trainpipe.engine.fit.fit_torch`, the one both torch
families train through) on N rows × 32 floats, MLP [256,128,64], dropout 0, AdamW, the same global batch
(1024 rows: one process takes 1024, each of 2 takes 512), one thread per process. Measured in one run:

- samples/s of the training epochs (rank 0's wall time of the fit, after the process group is up: torchrun's
  start and imports are reported apart, as `start_seconds`), for 1 process and for 2 processes;
- speed-up (2-process ÷ 1-process samples/s) and scaling efficiency (speed-up ÷ 2);
- the final validation loss of each (the same global batch: they should agree closely).

On a 2-core machine that is shared, 2 processes can at best use both cores, and any other load takes from
them: the figures say what this machine gave, not what the code can do (on a GPU machine pass
`--backend nccl --device cuda`). `measure(quick)` is what benchmarks/bench_distributed.py calls.
Usage: .venv/bin/python benchmarks/distributed_torch.py [--quick] [--rows 200000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "distributed_torch.json"
HIDDEN, GLOBAL_BATCH, SEED = [256, 128, 64], 1024, 0


def worker(rows: int, epochs: int, out: Path, backend: str, device: str) -> None:
    """One rank (or the one process): train through fit_torch, rank 0 writes its timings."""
    import numpy as np
    import torch

    from trainpipe.engine.batches import TensorBatches
    from trainpipe.engine.distributed import this_process
    from trainpipe.engine.fit import fit_torch
    from trainpipe.models.base import FitContext
    from trainpipe.models.tabular import TorchMLPParams, build_module

    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(rows, 32)).astype(np.float32)
    logit = X[:, 0] * X[:, 1] + np.sin(X[:, 2] * 2) + 0.5 * X[:, 3]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    n_val = rows // 10
    train = TensorBatches(torch.from_numpy(X[n_val:]), torch.from_numpy(y[n_val:]))
    val = TensorBatches(torch.from_numpy(X[:n_val]), torch.from_numpy(y[:n_val]))
    params = TorchMLPParams(epochs=epochs, batch_size=GLOBAL_BATCH, hidden_dims=HIDDEN, dropout=0.0, lr=1e-3,
                            device=device)  # type: ignore[arg-type]

    class Plain(torch.nn.Module):  # build_module's MLP takes (numeric, codes); this data has no codes
        def __init__(self) -> None:
            super().__init__()
            self.mlp = build_module(32, [], [], params, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mlp(x, x[:, :0].long())

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(1).float(), target)

    started = time.perf_counter()
    _, result = fit_torch(Plain, loss, lambda out, target: {}, params, train, val, seed=SEED, threads=1,
                          options=FitContext(backend=backend), patience=None)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    if this_process().is_main:
        out.write_text(json.dumps({"seconds": seconds, "samples": train.rows * epochs,
                                   "validation_loss": result.history["validation_loss"][-1]}))


def run(nproc: int, rows: int, epochs: int, backend: str, device: str) -> dict:
    """The worker under torchrun with `nproc` processes; wall time of the whole command as the start cost."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        args = [__file__, "--worker", "--rows", str(rows), "--epochs", str(epochs), "--out", str(out),
                "--backend", backend, "--device", device]
        command = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                    "--max-restarts=0", *args] if nproc > 1 else [sys.executable, *args])
        started = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, check=False,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{nproc} process(es) failed:\n{proc.stderr[-3000:]}")
        doc = json.loads(out.read_text())
    return {"samples_per_s": doc["samples"] / doc["seconds"], "fit_seconds": doc["seconds"],
            "start_seconds": wall - doc["seconds"], "validation_loss": doc["validation_loss"]}


def measure(quick: bool, backend: str = "gloo", device: str = "cpu") -> dict:
    rows, epochs = (20_000, 1) if quick else (200_000, 2)
    one = run(1, rows, epochs, backend, device)
    two = run(2, rows, epochs, backend, device)
    speedup = two["samples_per_s"] / one["samples_per_s"]
    return {"rows": rows, "epochs": epochs, "global_batch": GLOBAL_BATCH, "threads_per_process": 1,
            "backend": backend, "device": device, "one_process": one, "two_processes": two,
            "speedup_2_vs_1": speedup, "scaling_efficiency": speedup / 2, "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
            "note": "2 processes on a 2-core shared machine: the speed-up is bounded by the cores and by other load"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that it runs")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--backend", default="gloo")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.worker:
        worker(args.rows, args.epochs, args.out, args.backend, args.device)
        return
    result = measure(args.quick, args.backend, args.device)
    one, two = result["one_process"], result["two_processes"]
    print(f"{result['rows']:,} rows × {result['epochs']} epoch(s), global batch {GLOBAL_BATCH}, 1 thread/process, "
          f"{args.backend}/{args.device}, load {result['load_average'][0]:.1f} on {result['cpu_count']} cores")
    for name, r in (("1 process", one), ("2 processes", two)):
        print(f"  {name:<12} {r['samples_per_s']:>10,.0f} samples/s  fit {r['fit_seconds']:.1f}s  "
              f"start {r['start_seconds']:.1f}s  validation_loss {r['validation_loss']:.5f}")
    print(f"  speed-up 2 vs 1: {result['speedup_2_vs_1']:.2f}×  scaling efficiency {result['scaling_efficiency']:.0%}"
          f"  ({result['note']})")
    if not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
