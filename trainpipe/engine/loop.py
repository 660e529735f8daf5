"""The one training loop: windows of rows → optimizer steps, epoch-end validation, checkpoints.

Everything that decides the next weights (epoch, row position, batch order, RNG states, optimizer,
scheduler, scaler, early-stopping state, running sums) is in `state()`, so a run resumed from any
checkpoint computes exactly what the uninterrupted run would have. Checkpoints are taken only at
optimizer-step boundaries, where no gradient is pending.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from trainpipe.engine.batches import TensorBatches
from trainpipe.engine.checkpoint import CheckpointStore, rng_state, set_rng_state
from trainpipe.engine.config import CheckpointConfig, EngineParams
from trainpipe.engine.progress import Progress
from trainpipe.engine.schedules import build_optimizer, build_scheduler
from trainpipe.errors import ModelError, Preempted

# Test hooks (env): announce each optimizer step in a file, and pause at one step until a signal
# arrives. They only observe and wait; they never change what is computed.
STEP_FILE, PAUSE_AT = "TRAINPIPE_TEST_STEP_FILE", "TRAINPIPE_TEST_PAUSE_AT_STEP"


class TrainingDiverged(ModelError):
    """The loss became NaN/Inf more often than `max_bad_batches` allows."""


@dataclass
class LoopResult:
    history: dict[str, list[float]]
    epochs: int
    best_epoch: int | None
    stopped_early: bool
    resumed_from: str | None = None


@dataclass
class Callback:
    """Hooks the loop calls; return True from `on_epoch_end` to stop (pruning)."""

    on_step_end: Callable[[int], None] | None = None
    on_epoch_end: Callable[[int, dict[str, float]], bool] | None = None


@dataclass
class _State:
    epoch: int = 0
    pos: int = 0  # rows of this epoch already trained on
    step: int = 0  # optimizer steps so far
    perm: torch.Tensor | None = None
    sums: dict[str, float] = field(default_factory=lambda: {"loss": 0.0, "rows": 0.0, "norm": 0.0, "steps": 0.0})
    history: dict[str, list[float]] = field(default_factory=dict)
    best: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    bad_epochs: int = 0
    bad_batches: int = 0
    best_weights: dict | None = None
    micro: int = 0
    accum: int = 1
    stopped: bool = False


class Trainer:
    def __init__(self, module: torch.nn.Module, loss_fn, metrics_fn, params: EngineParams, *, seed: int, threads: int,
                 patience: int | None = None, store: CheckpointStore | None = None,
                 checkpoint: CheckpointConfig | None = None, resume_anyway: bool = False,
                 callbacks: list[Callback] | None = None, verbose: bool = False,
                 evaluator: Callable[[], dict[str, float]] | None = None):
        self.module, self.loss_fn, self.metrics_fn, self.p = module, loss_fn, metrics_fn, params
        # evaluator: the epoch-end validation values in place of `evaluate(val)` (ranking: Recall@K over all items)
        self.evaluator = evaluator
        self.seed, self.threads, self.patience = seed, threads, patience
        self.store, self.ckpt, self.resume_anyway = store, checkpoint or CheckpointConfig(), resume_anyway
        self.callbacks, self.progress = callbacks or [], Progress(verbose, params.epochs)
        self.device = torch.device("cuda" if params.device == "cuda" or (params.device == "auto" and torch.cuda.is_available())
                                   else "cpu")
        self.s = _State(micro=params.batch_size, accum=params.grad_accumulation)
        # Batch norm cannot train on one row: such a micro-batch joins the previous one, a 1-row window is skipped.
        self.min_rows = 2 if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules()) else 1
        self.term = False
        self.last_checkpoint: str | None = None

    # -- state ------------------------------------------------------------------------------
    def state(self) -> dict:
        s = self.s
        return {"module": self.module.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched else None, "scaler": self.scaler.state_dict(),
                "rng": rng_state(), "epoch": s.epoch, "pos": s.pos, "global_step": s.step, "perm": s.perm,
                "sums": dict(s.sums), "history": s.history, "best": s.best, "best_epoch": s.best_epoch,
                "best_step": s.best_step, "bad_epochs": s.bad_epochs, "bad_batches": s.bad_batches,
                "best_weights": s.best_weights, "micro": s.micro, "accum": s.accum, "stopped": s.stopped}

    def load_state(self, st: dict) -> None:
        self.module.load_state_dict(st["module"])
        self.opt.load_state_dict(st["optimizer"])
        if self.sched and st["scheduler"] is not None:
            self.sched.load_state_dict(st["scheduler"])
        self.scaler.load_state_dict(st["scaler"])
        set_rng_state(st["rng"])
        s = self.s
        s.epoch, s.pos, s.step, s.perm, s.sums = st["epoch"], st["pos"], st["global_step"], st["perm"], dict(st["sums"])
        s.history = {k: list(v) for k, v in st["history"].items()}
        s.best, s.best_epoch, s.best_step, s.bad_epochs = st["best"], st["best_epoch"], st["best_step"], st["bad_epochs"]
        s.bad_batches, s.best_weights, s.micro, s.accum, s.stopped = (st["bad_batches"], st["best_weights"], st["micro"],
                                                                      st["accum"], st["stopped"])

    def save(self) -> None:
        if self.store is not None:
            self.last_checkpoint = str(self.store.save(self.state(), self.s.step, self.s.best_step))

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, train: TensorBatches, val: TensorBatches) -> LoopResult:
        previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        old_handler = self._install_sigterm()
        try:
            return self._fit(train.to(self.device), val.to(self.device) if val is not None else None)  # moved once
        finally:
            self.progress.close()
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)
            torch.set_num_threads(previous[0])
            torch.use_deterministic_algorithms(previous[1])

    def _install_sigterm(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_term(signum, frame):
            self.term = True  # finish the current step, checkpoint, then stop

        return signal.signal(signal.SIGTERM, on_term)

    def _fit(self, train: TensorBatches, val: TensorBatches) -> LoopResult:
        p, s = self.p, self.s
        self.module.to(self.device)
        window = p.batch_size * p.grad_accumulation
        steps_per_epoch = math.ceil(train.rows / window)
        self.opt = build_optimizer(self.module, p, self.device)
        self.sched = build_scheduler(self.opt, p, steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=p.amp == "fp16")
        self.step_module = torch.compile(self.module) if p.compile else self.module
        resumed = self.store.latest(self.resume_anyway) if self.store is not None else None
        if resumed is not None:
            self.load_state(resumed)
            self.last_checkpoint = resumed["path"]
            self._say(f"resuming from {resumed['path']} (epoch {s.epoch + 1}, step {s.step})")
        pause_at = int(os.environ.get(PAUSE_AT, "0") or 0)
        while s.epoch < p.epochs and not s.stopped:
            if s.perm is None:
                s.perm = train.permutation(self.seed, s.epoch)
            started, rows_at_start = time.perf_counter(), s.pos
            self.progress.start_epoch(s.epoch, train.rows, s.pos)
            self.module.train()
            for batch in train.windows(self.seed, s.epoch, s.perm, s.pos, window):
                batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
                self._train_window(batch)
                s.pos += len(batch[-1])
                s.step += 1
                self.progress.advance(s.pos, s.sums["loss"] / max(s.sums["rows"], 1))
                if self.sched is not None and p.schedule != "plateau":
                    self.sched.step()
                if self.ckpt.every_steps and s.step % self.ckpt.every_steps == 0:
                    self.save()
                self._announce(s.step, pause_at)
                if self.term:
                    self._preempt()
                for cb in self.callbacks:
                    if cb.on_step_end:
                        cb.on_step_end(s.step)
            self._end_epoch(val, (s.pos - rows_at_start) / max(time.perf_counter() - started, 1e-9))
        if self.patience and s.best_weights is not None:
            self.module.load_state_dict(s.best_weights)  # predict with the best epoch's weights
        self.module.eval()
        return LoopResult(s.history, s.epoch, s.best_epoch, s.stopped and s.epoch < p.epochs,
                          resumed["path"] if resumed is not None else None)

    def _train_window(self, batch: tuple[torch.Tensor, ...]) -> None:
        """One optimizer step over `batch`; on CUDA OOM halve the micro-batch, double accumulation, redo."""
        s, p = self.s, self.p
        for attempt in range(p.max_oom_retries + 1):
            try:
                self._forward_backward(batch)
                return
            except torch.OutOfMemoryError:
                self.opt.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if attempt == p.max_oom_retries or s.micro == 1:
                    raise ModelError(f"model.params.batch_size: out of memory even at micro-batch {s.micro} "
                                     f"(accumulation {s.accum}); lower batch_size", key="model.params.batch_size")
                s.micro, s.accum = max(1, s.micro // 2), s.accum * 2
                self._say(f"out of memory: micro-batch now {s.micro}, accumulation {s.accum} (same effective batch)")

    def _forward_backward(self, batch: tuple[torch.Tensor, ...]) -> None:
        s, p = self.s, self.p
        loss_sum, rows_done = 0.0, 0
        amp = p.amp != "none"
        dtype = torch.bfloat16 if p.amp == "bf16" else torch.float16
        total = len(batch[-1])
        if total < self.min_rows:
            self._say(f"skipping a {total}-row batch at epoch {s.epoch + 1} (batch norm needs at least 2 rows)")
            return
        starts = list(range(0, total, s.micro))
        if len(starts) > 1 and total - starts[-1] < self.min_rows:
            starts.pop()
        for start, end in zip(starts, starts[1:] + [total]):
            *features, target = (t[start:end] for t in batch)
            rows = len(target)
            with torch.autocast(self.device.type, dtype=dtype, enabled=amp):
                loss = self.loss_fn(self.step_module(*features), target)
            value = float(loss.item())
            if not math.isfinite(value):
                s.bad_batches += 1
                if s.bad_batches > p.max_bad_batches:
                    raise TrainingDiverged(
                        f"model: loss became {value} at epoch {s.epoch + 1} step {s.step + 1}; last good checkpoint: "
                        f"{self.last_checkpoint or 'none'} (lower model.params.lr, set clip_grad_norm, or allow "
                        "max_bad_batches)", key="model.params.lr")
                self._say(f"skipping a batch with loss {value} at epoch {s.epoch + 1} step {s.step + 1}")
                continue
            self.scaler.scale(loss * (rows / total)).backward()
            loss_sum, rows_done = loss_sum + value * rows, rows_done + rows
        self.scaler.unscale_(self.opt)
        grads = [q.grad for q in self.module.parameters() if q.grad is not None]
        if grads:
            norm = (torch.nn.utils.clip_grad_norm_(self.module.parameters(), p.clip_grad_norm) if p.clip_grad_norm
                    else torch.nn.utils.get_total_norm(grads))
            self.scaler.step(self.opt)
            self.scaler.update()
            s.sums["norm"] += float(norm)
        self.opt.zero_grad(set_to_none=True)
        s.sums["loss"] += loss_sum
        s.sums["rows"] += rows_done
        s.sums["steps"] += 1

    def _end_epoch(self, val: TensorBatches, rows_per_s: float) -> None:
        s, p = self.s, self.p
        values = {"train_loss": s.sums["loss"] / max(s.sums["rows"], 1),
                  "train_grad_norm": s.sums["norm"] / max(s.sums["steps"], 1),
                  "lr": float(self.opt.param_groups[0]["lr"])}
        measured = self.evaluator() if self.evaluator is not None else self.evaluate(val)
        values.update({f"validation_{k}": v for k, v in measured.items()})
        if p.monitor not in values:
            raise ModelError(f"model.params.monitor: {p.monitor!r} is not one of {sorted(values)}", key="model.params.monitor")
        for key, value in values.items():
            s.history.setdefault(key, []).append(float(value))
        current = values[p.monitor]
        improved = s.best is None or (current < s.best if p.mode == "min" else current > s.best)
        if improved:
            s.best, s.best_epoch, s.bad_epochs = current, s.epoch, 0
            if self.patience:
                s.best_weights = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        else:
            s.bad_epochs += 1
        if self.sched is not None and p.schedule == "plateau":
            self.sched.step(current)
        stop = bool(self.patience and s.bad_epochs >= self.patience)
        for cb in self.callbacks:
            if cb.on_epoch_end and cb.on_epoch_end(s.epoch, values):
                stop = True
        self.progress.end_epoch(f"epoch {s.epoch + 1}/{p.epochs}  " + "  ".join(f"{k} {v:.5g}" for k, v in values.items())
                  + f"  {rows_per_s:,.0f} rows/s")
        s.epoch, s.pos, s.perm, s.stopped = s.epoch + 1, 0, None, stop
        s.sums = {"loss": 0.0, "rows": 0.0, "norm": 0.0, "steps": 0.0}
        if self.ckpt.every_epoch and self.store is not None:
            if improved:
                s.best_step = s.step
            self.save()

    @torch.no_grad()
    def evaluate(self, data: TensorBatches, batch_size: int = 65536) -> dict[str, float]:
        self.module.eval()
        outputs, targets = [], []
        for batch in data.sequential(batch_size):
            *features, target = (t.to(self.device) for t in batch)
            outputs.append(self.module(*features).float())
            targets.append(target)
        self.module.train()
        out, y = torch.cat(outputs), torch.cat(targets)
        return {"loss": float(self.loss_fn(out, y)), **self.metrics_fn(out, y)}

    # -- signals, test hooks, messages ----------------------------------------------------------
    def _preempt(self) -> None:
        if self.store is None:
            raise Preempted("training stopped by SIGTERM (no checkpoint folder: nothing to resume)", key="train")
        if self.last_checkpoint != str(self.store.path(self.s.step)):
            self.save()
        raise Preempted(f"training preempted by SIGTERM at epoch {self.s.epoch + 1} step {self.s.step}; "
                        f"checkpoint {self.last_checkpoint}", key="train")

    def _announce(self, step: int, pause_at: int) -> None:
        path = os.environ.get(STEP_FILE)
        if not path:
            return
        with open(path, "w") as handle:
            handle.write(str(step))
        while step == pause_at and not self.term:
            time.sleep(0.02)

    def _say(self, line: str) -> None:
        self.progress.say(line)
