"""Options of the torch training loop, as pydantic models (no torch import: the CLI loads them).

`EngineParams` is what changes the fitted weights (optimizer, schedule, epochs, AMP...), so a torch
family's `model.params` extends it: hyperparameter search sees one flat namespace, as it does for
boosters' `n_estimators`/`learning_rate`. `CheckpointConfig` is operational (when to save, how many
to keep) and lives in `training.checkpoint`, shared by every torch family. `parse_params` and
`import_torch` give every torch family the same one-line errors.
"""

from __future__ import annotations

import importlib.util
import os
import re
from types import ModuleType
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trainpipe.errors import MissingDependency, ModelError

P = TypeVar("P", bound=BaseModel)


def parse_params(cls: type[P], params: dict, family: str) -> P:
    """`model.params` as the family's params model; a mistake is one line naming `model.params.X`."""
    import difflib

    try:
        return cls(**params)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".") or "params"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(name, list(cls.model_fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            message = f"model.params.{name}: {family} has no parameter {name!r}{hint}"
        else:
            message = f"model.params.{name}: {err['msg']} (got {err.get('input')!r})"
        raise ModelError(message, key=f"model.params.{name}") from exc


def _no_torch(family: str) -> MissingDependency:
    return MissingDependency(f"model.type: {family} needs torch; pip install 'trainpipe[torch]'", key="model.type")


def check_torch(family: str) -> None:
    """Before any data is read: is torch importable (without paying for the import)?"""
    if importlib.util.find_spec("torch") is None:
        raise _no_torch(family)


def import_torch(family: str) -> ModuleType:
    try:
        import torch
    except ImportError as exc:
        raise _no_torch(family) from exc
    return torch


class EngineParams(BaseModel):
    """Loop hyperparameters shared by every torch family (`model.params.*`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=20, ge=1, description="Passes over the training rows.")
    batch_size: int = Field(default=512, ge=1, description="Rows per micro-batch (one forward/backward).")
    grad_accumulation: int = Field(default=1, ge=1, description="Micro-batches per optimizer step (effective batch = batch_size × this).")
    optimizer: Literal["adamw", "adam", "sgd"] = Field(default="adamw", description="adamw, adam, or sgd with momentum.")
    lr: float = Field(default=1e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="L2 penalty (decoupled for adamw).")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum.")
    schedule: Literal["none", "cosine", "onecycle", "step", "plateau"] = Field(
        default="none", description="LR schedule: cosine (to 0 over all steps), onecycle, step (× gamma every step_epochs), "
                "plateau (× gamma when the monitored metric stalls for step_epochs).")
    warmup_steps: int = Field(default=0, ge=0, description="Linear warmup from 0 over this many optimizer steps (none, cosine, step).")
    step_epochs: int = Field(default=10, ge=1, description="step: epochs between LR drops; plateau: patience in epochs.")
    gamma: float = Field(default=0.1, gt=0, le=1, description="LR factor for step and plateau.")
    clip_grad_norm: float | None = Field(default=None, gt=0, description="Clip the global gradient norm to this; null: no clipping.")
    amp: Literal["none", "bf16", "fp16"] = Field(default="none", description="Autocast: bf16 (CPU or CUDA), fp16 (CUDA, with GradScaler). On the CPU (one "
                                                   "process, dense parameters) bf16 trains the linear layers from a bf16 "
                                                   "copy of the float32 weights; torch_mlp's small output layer stays "
                                                   "float32. A CPU without native bf16 (avx512_bf16 or AMX) trains "
                                                   "in float32 instead, with a warning: torch would emulate bf16 "
                                                   "~10x slower (docs/operations.md).")
    compile: bool = Field(default=False, description="torch.compile the model (pays off only on long runs).")
    monitor: str = Field(default="validation_loss", description="History key early stopping, plateau and the best checkpoint follow.")
    mode: Literal["min", "max"] = Field(default="min", description="Whether a lower or higher monitored value is better.")
    max_bad_batches: int = Field(default=0, ge=0, description="Skip up to this many NaN/Inf-loss batches before stopping the run.")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: cuda when available, else cpu.")
    max_oom_retries: int = Field(default=4, ge=0, description="CUDA out-of-memory: halve the micro-batch (doubling accumulation) at most this often.")

    @model_validator(mode="after")
    def _warmup_fits_schedule(self) -> EngineParams:
        if self.warmup_steps and self.schedule in ("onecycle", "plateau"):
            raise ValueError(f"warmup_steps: not combinable with schedule {self.schedule} (onecycle warms up itself)")
        return self


class CheckpointConfig(BaseModel):
    """Config section `training.checkpoint` (torch families)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every_steps: int | None = Field(default=None, ge=1, description="Also checkpoint every this many optimizer steps; null: epoch ends only.")
    every_epoch: bool = Field(default=True, description="Checkpoint at the end of every epoch.")
    keep_last: int = Field(default=2, ge=1, description="Newest checkpoints kept; the best one is kept in addition.")


# What `cluster` may be: `local`, or a scheduler address as dask.distributed takes it (tcp://10.0.0.5:8786,
# tls://..., host:port). Checked here so a typo is a config error before any data is read, not a timeout later.
SCHEDULER_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+]*://)?\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}$")
MEMORY = re.compile(r"^(?:auto|\d+(?:\.\d+)?\s*(?:[kKmMgGtT]i?)?[bB]?)$")


class DaskConfig(BaseModel):
    """Config section `training.distributed.dask` (xgboost, lightgbm): train the booster on a Dask cluster
    (models/gbdt_dask.py); `n_workers`, `threads_per_worker` and `memory_limit` describe the `local` cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: str = Field("local", description="`local`: a dask.distributed LocalCluster started and stopped by the "
                         "train stage; or the address of an existing scheduler, e.g. tcp://10.0.0.5:8786.")
    n_workers: int = Field(2, ge=1, description="local: worker processes.")
    threads_per_worker: int = Field(1, ge=1, description="local: threads per worker process.")
    memory_limit: str | None = Field(None, description="local: memory limit per worker, e.g. 4GB; null: Dask's default "
                                     "(the machine's memory shared by the workers).")

    @model_validator(mode="after")
    def _cluster(self) -> DaskConfig:
        if self.cluster != "local":
            if not SCHEDULER_ADDRESS.match(self.cluster):
                raise ValueError(f"cluster: expected `local` or a scheduler address like tcp://10.0.0.5:8786, "
                                 f"got {self.cluster!r}")
            local_only = sorted(self.model_fields_set & {"n_workers", "threads_per_worker", "memory_limit"})
            if local_only:
                raise ValueError(f"{local_only[0]}: only for cluster `local`; an existing cluster has its own workers")
        if self.memory_limit is not None and not MEMORY.match(self.memory_limit.strip()):
            raise ValueError(f"memory_limit: expected a size like 4GB or 512MiB, got {self.memory_limit!r}")
        return self


class DistributedConfig(BaseModel):
    """Config section `training.distributed`: scale the train (and tune) stage out on torchrun/DDP or Dask.

    The pipeline around training stays one process; only training fans out (docs/distributed.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nproc_per_node: int = Field(1, ge=1, description="torch families: processes per machine; > 1 launches "
                                "torch.distributed.run (torchrun) with DistributedDataParallel.")
    nnodes: int = Field(1, ge=1, description="torch families: machines taking part (multi-node needs rdzv_endpoint).")
    node_rank: int = Field(0, ge=0, description="torch families: this machine's rank among nnodes; the machine that "
                           "runs the train stage is 0, the others start torchrun themselves (docs/distributed.md).")
    rdzv_endpoint: str | None = Field(None, description="torch families: host:port of the rendezvous (c10d) for "
                                      "several machines; default: a free port on 127.0.0.1 (one machine).")
    backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="torch.distributed backend: auto is nccl "
                                                     "with CUDA, else gloo.")
    dask: DaskConfig | None = Field(None, description="xgboost, lightgbm: train on a Dask cluster (pip install "
                                    "'trainpipe[dask]'); null: in this process.")

    @model_validator(mode="after")
    def _multi_node_needs_rendezvous(self):
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("rdzv_endpoint: several machines (nnodes > 1) need a rendezvous host:port")
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank: must be below nnodes ({self.nnodes})")
        return self


def default_threads(processes: int = 1) -> int:
    """Threads when `training.threads` is unset: OMP_NUM_THREADS when it is set (how containers, schedulers and
    CI give a process its share of a machine; several processes each using every core thrash), else every core;
    shared between `processes` working at once (tune workers)."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    total = int(given) if given.isdigit() and int(given) > 0 else (os.cpu_count() or 1)
    return max(1, total // max(1, processes))

