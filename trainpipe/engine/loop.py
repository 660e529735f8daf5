"""The one training loop: windows of rows → optimizer steps, epoch-end validation, checkpoints.

Everything that decides the next weights is a stateful piece the Trainer owns, listed once in `_parts()`:
module, optimizer, scheduler, GradScaler, the RNG bundle, the data cursor (epoch, row position, batch
order), early stopping (best value, epoch, weights) and the loop's counters (step, running sums, history,
bad batches, OOM back-off). `state_dict()` is that list's state, so a run resumed from any checkpoint computes
exactly what the uninterrupted run would have. Checkpoints are taken only at optimizer-step boundaries, where
no gradient is pending.

Under torchrun the Trainer gets a `Distributed` (engine/distributed.py) and calls it at the few points where ranks
must meet: the wrapped module, each window's rows, the step's agreement, the epoch end, checkpoints and resume.
With one process those calls return their input, so the single-process loop is unchanged.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch

from trainpipe.engine.batches import Batch, BatchSource, EpochCursor
from trainpipe.engine.callbacks import hooks
from trainpipe.engine.checkpoint import FORMAT, CheckpointMismatch, CheckpointStore, from_format_1
from trainpipe.engine.config import CheckpointConfig, EngineParams
from trainpipe.engine.distributed import Distributed
from trainpipe.engine.flat import FlatOptimizerState, FlatParameters, WorkingCopy, grad_norm
from trainpipe.engine.precision import training_amp
from trainpipe.engine.progress import Progress
from trainpipe.engine.schedules import build_optimizer, build_scheduler
from trainpipe.engine.sparse_adam import has_sparse_gradients
from trainpipe.engine.state import LoopCounters, RngBundle, Stateful
from trainpipe.engine.stopping import EarlyStopping
from trainpipe.errors import ModelError, Preempted

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]
MetricsFn = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]


class TrainingDiverged(ModelError):
    """The loss became NaN/Inf more often than `max_bad_batches` allows."""


@dataclass
class LoopResult:
    history: dict[str, list[float]]
    epochs: int
    best_epoch: int | None
    stopped_early: bool
    resumed_from: str | None = None


class Trainer:
    """Trains `module` on a `BatchSource` with EngineParams; checkpoints to `store`; calls `callbacks`' hooks."""

    def __init__(self, module: torch.nn.Module, loss_fn: LossFn, metrics_fn: MetricsFn | None, params: EngineParams, *,
                 seed: int, threads: int, patience: int | None = None, store: CheckpointStore | None = None,
                 checkpoint: CheckpointConfig | None = None, resume_anyway: bool = False,
                 callbacks: Sequence[object] | None = None, verbose: bool = False,
                 evaluator: Callable[[], dict[str, float]] | None = None, dist: Distributed | None = None) -> None:
        self.module, self.loss_fn, self.metrics_fn, self.p = module, loss_fn, metrics_fn, params
        # torchrun: every rank holds the same state; rank 0 alone writes checkpoints, evaluates and reports.
        self.dist = dist or Distributed()
        # evaluator: the epoch-end validation values in place of `evaluate(val)` (ranking: Recall@K over all items)
        self.evaluator = evaluator
        self.seed, self.threads = seed, threads
        self.store, self.ckpt, self.resume_anyway = store, checkpoint or CheckpointConfig(), resume_anyway
        self.callbacks, self.progress = list(callbacks or ()), Progress(verbose, params.epochs)
        self.device = self.dist.device(params.device)
        self.amp = training_amp(params.amp, self.device.type)  # bf16 on a CPU without it: float32 (engine/precision.py)
        self.cursor = EpochCursor()
        self.stopping = EarlyStopping(params.mode, patience)
        self.counters = LoopCounters(micro=params.batch_size, accum=params.grad_accumulation)
        self.rng = RngBundle()
        self.parameters: list[torch.nn.Parameter] = []  # the module's, listed once per fit
        self.flat: FlatParameters | None = None  # one process, dense parameters: the optimizer steps one buffer
        self.working: WorkingCopy | None = None  # CPU bf16 autocast: the linear layers' bf16 twin (engine/flat.py)
        # Batch norm cannot train on one row: such a micro-batch joins the previous one, a 1-row window is skipped.
        self.min_rows = 2 if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules()) else 1
        self.preempt_requested = False  # SIGTERM arrived: finish the step, checkpoint, stop
        self.preempt_agreed = False  # several processes: some rank's SIGTERM, as the step's all-reduce reported it
        self.last_checkpoint: str | None = None
        self.saved_step: int | None = None
        self._rows_per_s: float | None = None  # the last epoch's training throughput, for callbacks

    # -- what callbacks read --------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.cursor.epoch

    @property
    def step(self) -> int:
        return self.counters.step

    @property
    def history(self) -> dict[str, list[float]]:
        return self.counters.history

    @property
    def rows_per_s(self) -> float | None:
        return self._rows_per_s

    # -- state ------------------------------------------------------------------------------
    def _parts(self) -> dict[str, Stateful]:
        """Every stateful piece, by the name its state has in a checkpoint: the one list of what is saved."""
        parts: dict[str, Stateful] = {
            "module": self.module, "optimizer": FlatOptimizerState(self.opt, self.flat) if self.flat else self.opt,
            "scaler": self.scaler, "rng": self.rng,
            "cursor": self.cursor, "stopping": self.stopping, "loop": self.counters}
        if self.sched is not None:
            parts["scheduler"] = self.sched
        return parts

    def state_dict(self) -> dict[str, Any]:
        self._master()
        return {"format": FORMAT, **{name: part.state_dict() for name, part in self._parts().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore every piece (after `fit` built the optimizer); a format-1 checkpoint is read as well."""
        state = from_format_1(state) if "format" not in state else state
        source = state.get("path", "the checkpoint")
        if state["format"] != FORMAT:
            raise CheckpointMismatch(f"{source} has checkpoint format {state['format']}; this trainpipe reads formats "
                                     f"1 and {FORMAT}: delete that folder to start training over", key="resume")
        for name, part in self._parts().items():
            try:
                part.load_state_dict(state[name])
            except (KeyError, RuntimeError, ValueError) as exc:  # shapes or parts differ (--resume-anyway)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise CheckpointMismatch(f"{source} does not fit this model ({name}: {first}); delete that folder "
                                         "to start training over", key="resume") from exc

    def save(self) -> None:
        """Every rank calls this at the same steps (it gathers each rank's random generators); rank 0 writes."""
        if self.store is None:
            return
        generators = self.dist.gather(self.rng.state_dict())
        self.saved_step = self.counters.step
        if not self.dist.is_main:
            return
        state = self.state_dict()
        if self.dist.enabled:  # a resume with the same world size restores each rank's own generators
            state["ranks"] = {"world_size": self.dist.world_size, "rng": generators}
        path = self.store.save(state, self.counters.step, self.stopping.best_step)
        self.last_checkpoint = str(path)
        for hook in hooks(self.callbacks, "on_checkpoint"):
            hook(self, path)

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, train: BatchSource, val: BatchSource | None) -> LoopResult:
        deterministic = torch.utils.deterministic
        previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                    deterministic.fill_uninitialized_memory)
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also fills every new tensor with NaN, a debugging aid for code that reads memory it
        # never wrote (none here): an extra pass over every op's output, ~2% of a small MLP's step on this CPU.
        deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        old_handler = self._install_sigterm()
        try:
            return self._fit(train.to(self.device), val.to(self.device) if val is not None else None)  # moved once
        finally:
            # Drop the DDP wrapper now, while its process group exists: one freed after the group is destroyed
            # (kept alive by a traceback) can block the process in its destructor.
            self.wrapped = self.step_module = self.module
            self._master()
            if self.flat is not None:  # kept: state_dict() still gives the optimizer's state per parameter
                self.flat.release()
            self.progress.close()
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)
            torch.set_num_threads(previous[0])
            torch.use_deterministic_algorithms(previous[1])
            deterministic.fill_uninitialized_memory = previous[2]  # type: ignore[attr-defined]

    def _install_sigterm(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_term(signum: int, frame: FrameType | None) -> None:
            self.preempt_requested = True  # finish the current step, checkpoint, then stop

        return signal.signal(signal.SIGTERM, on_term)

    def _fit(self, train: BatchSource, val: BatchSource | None) -> LoopResult:
        p, c, cursor = self.p, self.counters, self.cursor
        self.module.to(self.device)
        self.parameters = list(self.module.parameters())  # once: walking the module tree costs ~20 µs a step
        window = p.batch_size * p.grad_accumulation
        trainable = [q for q in self.parameters if q.requires_grad]
        # one process, dense parameters: the optimizer steps one buffer (DDP keeps its own gradient buckets)
        flat = not self.dist.enabled and trainable and not has_sparse_gradients(self.module)
        self.flat = FlatParameters.of(trainable) if flat else None
        if self.flat is not None and self.amp == "bf16" and self.device.type == "cpu" and not p.compile:
            self.working = WorkingCopy.of(self.flat, self.module, torch.bfloat16)
        self.opt = build_optimizer(self.module, p, self.device, [self.flat.flat] if self.flat else None)
        self.sched = build_scheduler(self.opt, p, math.ceil(train.rows / window))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        self.wrapped = self.dist.wrap(self.module)  # DDP under torchrun: all-reduces gradients in backward
        self.step_module = torch.compile(self.wrapped) if p.compile else self.wrapped
        resumed = self._latest()
        if resumed is not None:
            self.load_state_dict(resumed)
            self._restore_ranks(resumed)
            self.last_checkpoint, self.saved_step = resumed["path"], c.step
            self._say(f"resuming from {resumed['path']} (epoch {cursor.epoch + 1}, step {c.step})")
        step_hooks = hooks(self.callbacks, "on_step_end")
        while cursor.epoch < p.epochs and not c.stopped:
            started, rows_at_start = time.perf_counter(), cursor.pos
            self.progress.start_epoch(cursor.epoch, train.rows, cursor.pos)
            self.module.train()
            for batch in cursor.batches(train, self.seed, window):
                batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
                self._train_window(batch)
                cursor.advance(len(batch[-1]))
                c.step += 1
                self.progress.advance(cursor.pos, c.sums["loss"] / max(c.sums["rows"], 1))
                if self.sched is not None and p.schedule != "plateau":
                    self.sched.step()
                if self.ckpt.every_steps and c.step % self.ckpt.every_steps == 0:
                    self.save()
                if step_hooks:
                    self._master()  # hooks read the module: its float32 weights
                for hook in step_hooks:
                    hook(self)
                # one process: a SIGTERM during this step's hooks counts; several: the step's agreed flag
                if self.preempt_agreed if self.dist.enabled else self.preempt_requested:
                    self._preempt()
            self._end_epoch(val, (cursor.pos - rows_at_start) / max(time.perf_counter() - started, 1e-9))
        self.stopping.restore_best(self.module)  # predict with the best epoch's weights
        self.module.eval()
        return LoopResult(c.history, cursor.epoch, self.stopping.best_epoch, c.stopped and cursor.epoch < p.epochs,
                          resumed["path"] if resumed is not None else None)

    def _train_window(self, batch: Batch) -> None:
        """One optimizer step over the global window `batch` (each rank: its share); ranks agree, then step.

        The step is skipped on every rank when any micro-batch of any rank had a non-finite loss; on (CUDA) out of
        memory every rank halves its micro-batch and doubles accumulation, then redoes the window."""
        c, p = self.counters, self.p
        total = len(batch[-1])
        if total < self.min_rows:  # every rank sees the same window: all skip it
            self._say(f"skipping a {total}-row batch at epoch {self.cursor.epoch + 1} (batch norm needs at least 2 rows)")
            return
        local, counted = self.dist.shard(batch, self.min_rows)
        for attempt in range(p.max_oom_retries + 1):
            loss_sum, rows, bad, oom, first_bad = self._forward_backward(local, counted, total)
            loss_sum, rows, bad, oom, preempt = self.dist.sum([loss_sum, rows, bad, oom, float(self.preempt_requested)])
            self.preempt_agreed = preempt > 0
            if not oom:
                break
            self._zero_grad()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if attempt == p.max_oom_retries or c.micro == 1:
                raise ModelError(f"model.params.batch_size: out of memory even at micro-batch {c.micro} "
                                 f"(accumulation {c.accum}); lower batch_size", key="model.params.batch_size")
            c.micro, c.accum = max(1, c.micro // 2), c.accum * 2
            self._say(f"out of memory: micro-batch now {c.micro}, accumulation {c.accum} (same effective batch)")
        if bad:
            self._zero_grad()
            c.bad_batches += 1
            value = first_bad if first_bad is not None else "non-finite (on another rank)"
            where = f"at epoch {self.cursor.epoch + 1} step {c.step + 1}"
            if c.bad_batches > p.max_bad_batches:
                raise TrainingDiverged(
                    f"model: loss became {value} {where}; last good checkpoint: {self.last_checkpoint or 'none'} "
                    "(lower model.params.lr, set clip_grad_norm, or allow max_bad_batches)", key="model.params.lr")
            self._say(f"skipping a batch with loss {value} {where}")
            return
        self.scaler.unscale_(self.opt)
        if self.working is not None:
            self.working.fold()
        # flat parameters, no clipping: one norm over the one gradient buffer, which holds exactly the parameters'
        # gradients, instead of one per parameter (~30 µs, 3-5% of a small MLP's bf16 step here); it may differ
        # from the per-parameter sum in the last bit, so clipping, which scales the weights by it, keeps the
        # per-parameter norm and the flat and per-tensor layouts train the same weights bit for bit
        grads = [self.flat.grad] if self.flat is not None and not p.clip_grad_norm else self._gradients()
        if grads:
            norm = grad_norm(grads, p.clip_grad_norm)
            self.scaler.step(self.opt)
            if self.working is not None:
                self.working.sync()
            self.scaler.update()
            c.sums["norm"] += float(norm)
        self._zero_grad()
        c.sums["loss"] += loss_sum
        c.sums["rows"] += rows
        c.sums["steps"] += 1

    def _forward_backward(self, local: Batch, counted: bool, total: int) -> tuple[float, float, float, float, float | None]:
        """Forward and backward of this rank's rows in micro-batches; gradients are all-reduced (DDP) in the last
        backward only. Returns (loss × rows, rows, non-finite micro-batches, 1.0 on out of memory, first
        non-finite value). Out of memory: this rank still joins the all-reduce with a weight-0 row, so no rank
        waits for it; an OOM inside that all-reduce itself is not recoverable and fails the run."""
        c, p = self.counters, self.p
        amp = self.amp != "none"
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        size = len(local[-1])
        starts = list(range(0, size, c.micro))
        if len(starts) > 1 and size - starts[-1] < self.min_rows:
            starts.pop()
        loss_sum, rows_done, bad, first_bad = 0.0, 0.0, 0.0, None
        spans = list(zip(starts, starts[1:] + [size]))
        if self.working is not None:  # one micro-batch: bf16 working weights; several: float32 accumulation
            self.working.enter() if len(spans) == 1 else self.working.leave()
        for i, (start, end) in enumerate(spans):
            last = i == len(spans) - 1
            *features, target = (t[start:end] for t in local)
            rows = len(target)
            try:
                with self.dist.no_sync(self.wrapped, sync=last):
                    with torch.autocast(self.device.type, dtype=dtype, enabled=amp):
                        loss = self.loss_fn(self.step_module(*features), target)
                    weight = self.dist.loss_weight(rows, total) if counted else 0.0
                    # weight 1 (one process, one micro-batch): the same gradient without a multiply each way
                    self.scaler.scale(loss if weight == 1.0 else loss * weight).backward()
            except torch.OutOfMemoryError:
                self._join_after_oom(local, last)
                return 0.0, 0.0, 0.0, 1.0, None
            value = float(loss.item())
            if not math.isfinite(value):  # its gradient is non-finite too: the step will be skipped
                bad += 1
                first_bad = value if first_bad is None else first_bad
            elif counted:
                loss_sum, rows_done = loss_sum + value * rows, rows_done + rows
        return loss_sum, rows_done, bad, 0.0, first_bad

    def _master(self) -> None:
        if self.working is not None:
            self.working.leave()

    def _gradients(self) -> list[torch.Tensor]:
        """Each parameter's gradient (views of the flat buffer's, which the optimizer steps; sparse ones sorted once,
        for the norm and the step)."""
        if self.flat is not None:
            return self.flat.grads
        grads = []
        for q in self.parameters:
            if q.grad is not None:
                if q.grad.is_sparse:
                    q.grad = q.grad.coalesce()
                grads.append(q.grad)
        return grads

    def _zero_grad(self) -> None:
        if self.working is not None:
            self.working.zero_grad()
        if self.flat is not None:
            self.flat.zero_grad()
        else:
            self.opt.zero_grad(set_to_none=True)

    def _join_after_oom(self, local: Batch, failed_last: bool) -> None:
        """After this rank ran out of memory: drop its gradient and, with other ranks waiting in the last
        backward's all-reduce, take part in it with `min_rows` rows of weight 0."""
        self._zero_grad()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if not self.dist.enabled:
            return
        *features, target = (t[:self.min_rows] for t in local)
        loss = self.loss_fn(self.step_module(*features), target)
        (loss * 0.0).backward()

    def _end_epoch(self, val: BatchSource | None, rows_per_s: float) -> None:
        c, p = self.counters, self.p
        self._master()  # validation, early stopping's best weights and the hooks read the float32 weights
        values = {"train_loss": c.sums["loss"] / max(c.sums["rows"], 1),
                  "train_grad_norm": c.sums["norm"] / max(c.sums["steps"], 1),
                  "lr": float(self.opt.param_groups[0]["lr"])}
        if self.dist.is_main:  # rank 0 validates over all validation rows, exactly what one process computes
            measured = self.evaluator() if self.evaluator is not None else self.evaluate(val)
            values.update({f"validation_{k}": v for k, v in measured.items()})
        values = self.dist.broadcast(values)  # every rank decides from rank 0's numbers
        if p.monitor not in values:
            raise ModelError(f"model.params.monitor: {p.monitor!r} is not one of {sorted(values)}", key="model.params.monitor")
        for key, value in values.items():
            c.history.setdefault(key, []).append(float(value))
        current = values[p.monitor]
        improved = self.stopping.update(current, self.cursor.epoch, self.module)
        if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):  # schedule: plateau
            self.sched.step(current)
        stop = self.stopping.should_stop
        self._rows_per_s = rows_per_s
        for hook in hooks(self.callbacks, "on_epoch_end"):  # callbacks run on rank 0 only (engine/fit.py)
            if hook(self, values):
                stop = True
        stop = self.dist.broadcast(stop)
        self.progress.end_epoch(f"epoch {self.cursor.epoch + 1}/{p.epochs}  "
                                + "  ".join(f"{k} {v:.5g}" for k, v in values.items()) + f"  {rows_per_s:,.0f} rows/s")
        self.cursor.next_epoch()
        c.stopped, c.sums = stop, c.zero_sums()
        if self.ckpt.every_epoch and self.store is not None:
            if improved:
                self.stopping.best_step = c.step
            self.save()

    @torch.no_grad()
    def evaluate(self, data: BatchSource | None, batch_size: int = 65536) -> dict[str, float]:
        """Validation loss and `metrics_fn` over `data`, in eval mode (no dropout; no RNG drawn)."""
        if data is None or self.metrics_fn is None:
            raise ValueError("evaluate needs validation batches and a metrics function (or pass an evaluator)")
        self.module.eval()
        outputs, targets = [], []
        for batch in data.sequential(batch_size):
            *features, target = (t.to(self.device) for t in batch)
            outputs.append(self.module(*features).float())
            targets.append(target)
        self.module.train()
        out, y = torch.cat(outputs), torch.cat(targets)
        return {"loss": float(self.loss_fn(out, y)), **self.metrics_fn(out, y)}

    # -- resume ----------------------------------------------------------------------------
    def _latest(self) -> dict[str, Any] | None:
        return self.dist.latest_checkpoint(self.store, self.resume_anyway) if self.store is not None else None

    def _restore_ranks(self, state: dict[str, Any]) -> None:
        self.dist.restore_generators(state, self.rng, self.seed, self.counters.step)

    # -- signals, messages ------------------------------------------------------------------
    def _preempt(self) -> None:
        if self.store is None:
            raise Preempted("training stopped by SIGTERM (no checkpoint folder: nothing to resume)", key="train")
        if self.saved_step != self.counters.step:
            self.save()
        raise Preempted(f"training preempted by SIGTERM at epoch {self.cursor.epoch + 1} step {self.counters.step}; "
                        f"checkpoint {self.last_checkpoint}", key="train")

    def _say(self, line: str) -> None:
        self.progress.say(line)
