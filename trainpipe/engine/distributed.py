"""Every distributed concern of the torch loop in one object: the torchrun environment, the process group, the
DistributedDataParallel wrapper, the rows each rank trains on, and the few values ranks must agree on.

The loop calls it in a handful of places and never asks `if distributed`: with world size 1 (no torchrun
environment) every method is a no-op that returns its input, so one process computes exactly what it did
before this object existed.

Rules every rank follows, so no rank ever waits for a collective another rank skips (the hang of DDP jobs):
- The global window of rows (batch_size × grad_accumulation) and the order of rows are the one process's, for
  any world size: each rank takes a contiguous part of every window (`shard`), the first `rows mod world`
  ranks one row more. A rank whose part is too small (0 rows, or 1 row under batch norm) runs the window's
  first rows with weight 0: it joins the gradient all-reduce and adds nothing.
- Each micro-batch's loss is weighted by its share of the global window × world size; DDP averages over the
  ranks, so the step's gradient is the global window's mean, as in one process (up to summation order).
- Every optimizer step ends with one small all-reduce (`sum`) of the step's loss, rows, non-finite count,
  out-of-memory count and SIGTERM flag: skipping a non-finite step, the OOM back-off and preemption are decided
  from the same numbers on every rank.
- Epoch-end values (validation on rank 0 over all validation rows, so exactly one process's numbers; the
  other ranks wait at the broadcast) and the stop decision (early stopping, callbacks, pruning) are rank 0's,
  broadcast to every rank.
- Before the first step rank 0 says whether it trains at all (`go`): a rank 0 that ends without training (its
  stage reused from the cache, an error before the fit) releases the other ranks instead of leaving them
  waiting in the process group.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from trainpipe.engine.checkpoint import CheckpointMismatch, CheckpointStore
from trainpipe.engine.state import RngBundle, seed_everything

Backend = Literal["auto", "gloo", "nccl"]


class NothingToTrain(Exception):
    """On a rank other than 0: rank 0 ended its job without training (cache reuse, an error before its fit)."""


class Distributed:
    """This process's place in a torchrun job (rank, world size, local rank) and its process group."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, local_world_size: int = 1) -> None:
        self.rank, self.world_size = rank, world_size
        self.local_rank, self.local_world_size = local_rank, local_world_size
        self._started_here = False  # destroy only a process group this object created
        self.announced = False  # rank 0 said whether it trains (`go`)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Distributed:
        """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE); none of it: one process."""
        world = int(environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        return cls(int(environ["RANK"]), world, int(environ.get("LOCAL_RANK", "0")),
                   int(environ.get("LOCAL_WORLD_SIZE", str(world))))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, checkpoints, evaluates and returns the model."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Distributed(rank={self.rank}, world_size={self.world_size}, local_rank={self.local_rank})"

    # -- process group ------------------------------------------------------------------------
    def start(self, backend: Backend, device: torch.device) -> None:
        """Join the process group (the env:// rendezvous torchrun set up), once per process: a no-op for one
        process, when this process joined already, or when the caller's own code did. It is left at process
        exit (atexit): re-creating a gloo group in the same process fails to connect, and tuning fits
        several trials in one job."""
        import torch.distributed as dist

        if not self.enabled or dist.is_initialized():
            return
        chosen = resolve_backend(backend, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=chosen, rank=self.rank, world_size=self.world_size)
        self._started_here = True
        atexit.register(self.stop)

    def stop(self) -> None:
        if self._started_here:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self._started_here = False

    def go(self, train: bool) -> bool:
        """Rank 0's word on whether this job trains; every rank returns it. Called once by rank 0 (True from the fit,
        False by a stage that ends without one) and once by every other rank before its first step."""
        self.announced = True
        return bool(self.broadcast(train))

    def release_waiting(self, backend: Backend = "auto", device: str = "auto") -> None:
        """Rank 0 ending without a fit: tell the ranks waiting in `go` that there is nothing to train. `device`:
        `model.params.device`, so that `auto` picks the backend the other ranks picked."""
        if self.enabled and self.is_main and not self.announced:
            self.start(backend, self.device(device))
            self.go(False)

    def device(self, requested: str) -> torch.device:
        """`model.params.device` for this rank: CUDA device `LOCAL_RANK` with several processes per machine."""
        cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
        if not cuda:
            return torch.device("cpu")
        return torch.device("cuda", self.local_rank) if self.enabled else torch.device("cuda")

    def threads(self, threads: int) -> int:
        """CPU threads per rank: the machine's share, so N processes do not oversubscribe its cores."""
        return max(1, threads // self.local_world_size) if self.enabled else threads

    def seed(self, seed: int, offset: int = 0) -> None:
        """Rank 0 keeps the one process's random stream; every other rank gets its own (dropout masks, random
        negatives), after the module was built from the shared seed. `offset`: a resume point's step."""
        if self.enabled and self.rank:
            seed_everything(seed + 1_000_003 * self.rank + offset)

    # -- the model ----------------------------------------------------------------------------
    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around `module` (its parameters, already on the rank's device). Buffers are
        synced once at the start, not at every forward: only rank 0's are ever used (validation, checkpoints), so
        batch-norm running statistics are rank 0's rows' (docs/distributed.md)."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [module_device(module)] if module_device(module).type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)

    def no_sync(self, wrapped: torch.nn.Module, sync: bool) -> contextlib.AbstractContextManager[Any]:
        """Accumulate a micro-batch's gradient locally (`sync` False) or all-reduce it with this backward."""
        if sync or not self.enabled:
            return contextlib.nullcontext()
        return wrapped.no_sync()  # type: ignore[operator]  # DistributedDataParallel (wrap)

    # -- rows -----------------------------------------------------------------------------------
    def shard(self, batch: tuple[torch.Tensor, ...], min_rows: int) -> tuple[tuple[torch.Tensor, ...], bool]:
        """This rank's contiguous part of a global window, and whether its rows count (False: a weight-0
        stand-in of the window's first `min_rows` rows, for a part too small to train on)."""
        if not self.enabled:
            return batch, True
        part = tuple(t.tensor_split(self.world_size)[self.rank] for t in batch)
        if len(part[-1]) >= min_rows:
            return part, True
        return tuple(t[:min_rows] for t in batch), False

    def loss_weight(self, rows: int, window_rows: int) -> float:
        """A micro-batch's weight in its step: its share of the global window, × world size against DDP's mean."""
        return rows * self.world_size / window_rows

    # -- resume -------------------------------------------------------------------------------
    def latest_checkpoint(self, store: CheckpointStore, resume_anyway: bool) -> dict[str, Any] | None:
        """The checkpoint to resume: rank 0 chooses it (skipping broken files), every rank reads that file. A
        refusal (another config's checkpoint) reaches every rank, or the others would wait at the broadcast."""
        state, refused = None, None
        if self.is_main:
            try:
                state = store.latest(resume_anyway)
            except CheckpointMismatch as exc:
                refused = exc
        path, message = self.broadcast((state["path"] if state is not None else None,
                                        refused.message if refused is not None else None))
        if refused is not None:
            raise refused
        if message is not None:
            raise CheckpointMismatch(message, key="resume")
        if state is None and path is not None:
            state = {**CheckpointStore.read(Path(path)), "path": path}
        return state

    def restore_generators(self, state: dict[str, Any], rng: RngBundle, seed: int, step: int) -> None:
        """Each rank's own random generators when the world size is the one that wrote the checkpoint; otherwise
        rank 0 continues with the saved ones, other ranks start fresh streams, and the run says it is not exact."""
        ranks = state.get("ranks") or {"world_size": 1}
        if ranks["world_size"] == self.world_size:
            if self.enabled:
                rng.load_state_dict(ranks["rng"][self.rank])
            return
        self.seed(seed, offset=step)
        if self.is_main:
            print(f"warning: resuming a checkpoint written by {ranks['world_size']} training process(es) with "
                  f"{self.world_size}: the result is not bit-identical to an uninterrupted run", file=sys.stderr)

    # -- agreement ------------------------------------------------------------------------------
    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks (float64; counts stay exact); one process: `values` as they are."""
        if not self.enabled:
            return values
        import torch.distributed as dist

        device = torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.cpu().tolist()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (pickled: small values only)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order, on every rank (pickled: small values only)."""
        if not self.enabled:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out


@functools.cache
def this_process() -> Distributed:
    """This process's place in a torchrun job, read once from its environment (which is the process's own)."""
    return Distributed.from_env()


def resolve_backend(backend: Backend, device: torch.device) -> str:
    """`auto`: nccl when training on CUDA, gloo otherwise (CPU)."""
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    return backend


def module_device(module: torch.nn.Module) -> torch.device:
    first = next(iter(module.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def window_shares(rows: int, world_size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each rank's part of a `rows`-row window: what `shard` gives rank 0, 1, ... in turn."""
    base, extra = divmod(rows, world_size)
    start = 0
    for rank in range(world_size):
        end = start + base + (1 if rank < extra else 0)
        yield start, end
        start = end
