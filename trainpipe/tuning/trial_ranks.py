"""A tuning worker whose trials are DDP jobs (`tuning.trial_world_size` W > 1): what rank 0 and the other ranks say
to each other between trials.

The worker runs under torchrun with W processes (worker.start_workers launches it; engine/launch.py builds the
command). Rank 0 is the tune worker proper: it holds the Optuna study, asks it for each trial (samples the
parameters), logs the trial to MLflow, records its cost and tells the study how the trial ended. The other ranks
never touch the study or MLflow; they loop on one broadcast from rank 0:

- `(number, params)`: a trial starts; every rank fits the same family with the same parameters, so the same
  `fit_torch` with the engine's DDP runs on every rank (its gradient all-reduces and per-step agreements);
- `None`: the worker is done (n_trials, timeout, max_cost or the study stopped it between trials).

Why this, and not optuna-integration's TorchDistributedTrial: that object makes every rank call
`trial.report`/`should_prune`, each a collective in which rank 0 answers; a rank that stops (an exception, a
prune it learnt of first, an early stop) while another is still inside one of those collectives waits forever
(the DDP hangs in optuna-integration's issues). Here the only agreement points inside a trial are the engine's own,
which every rank passes in the same order by construction (engine/distributed.py): the pruner is asked on rank 0
alone, in the Reporter that is rank 0's epoch callback, and its decision (pruned, or `tuning.trial_timeout`)
travels with the engine's stop decision, broadcast at every epoch end. Between trials a rank waits only in
`next_trial`, which rank 0 always answers: with the next trial, or with `None` when its loop ends normally.
When rank 0 ends abnormally (a bug, a storage error, SIGTERM) it exits non-zero and torchrun stops the other
ranks; a rank that dies makes torchrun stop rank 0 the same way. So no rank is ever left waiting.

Every rank appends one line per trial to `ranks/worker-<index>.rank-<rank>.jsonl` in the stage folder: the trial
number and parameters it trained (rank 0 when it announced them; the others when they ended the fit, with the
epochs trained), the evidence that every rank trained the same trial the same way.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainpipe.engine.distributed import Distributed
from trainpipe.errors import ModelError

RECORDS = "ranks"  # the per-rank records' folder, in the tune stage's folder


class TrialRanks:
    """This process's side of the broadcasts between rank 0 (the Optuna worker) and the other ranks of a trial."""

    def __init__(self, dist: Distributed, record_dir: Path, worker: int) -> None:
        self.dist, self.worker = dist, worker
        self.record = record_dir / f"worker-{worker}.rank-{dist.rank}.jsonl"
        record_dir.mkdir(parents=True, exist_ok=True)

    def join(self, backend: Any, device: str) -> None:
        """The process group, before the first broadcast (fit_torch's own `start` is then a no-op)."""
        self.dist.start(backend, self.dist.device(device))

    # -- rank 0 ---------------------------------------------------------------------------------------
    def announce(self, number: int, params: dict[str, Any]) -> None:
        """Rank 0, in the objective, after the study sampled `params`: every rank starts this trial's fit."""
        self.dist.broadcast((number, params))
        self._write({"trial": number, "params": params})

    def finish(self) -> None:
        """Rank 0, after its optimisation loop ended normally: the other ranks leave theirs."""
        self.dist.broadcast(None)

    # -- the other ranks --------------------------------------------------------------------------------
    def next_trial(self) -> tuple[int, dict[str, Any]] | None:
        return self.dist.broadcast(None)

    def follow(self, fit: Callable[[dict[str, Any]], Any]) -> int:
        """Ranks other than 0: fit every trial rank 0 announces until it says it is done; returns the trials.
        A ModelError (a parameter set that cannot be trained, a diverged fit) is rank 0's too, since it fits the
        same parameters through the same agreements: rank 0 records the failed trial and goes on, so does this
        rank."""
        trials = 0
        while (message := self.next_trial()) is not None:
            number, params = message
            line: dict[str, Any] = {"trial": number, "params": params}
            try:
                result = fit(params)
                line.update(iterations=result.iterations, stopped_early=result.stopped_early)
            except ModelError as exc:
                line["error"] = exc.message
            except BaseException:
                line["error"] = traceback.format_exc().strip().splitlines()[-1]
                self._write(line)
                raise
            self._write(line)
            trials += 1
        return trials

    def _write(self, line: dict[str, Any]) -> None:
        with self.record.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"rank": self.dist.rank, **line}, default=str) + "\n")

