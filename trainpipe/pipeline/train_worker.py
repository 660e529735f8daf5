"""One rank of a torchrun job that trains a run's model.

Two ways in, one body (`train_rank`: the train stage's own `plan` and `fit`, so the same engine loop, with DDP
inside trainpipe.engine.fit):
- `python -m trainpipe.pipeline.train_worker --store S --run-id ID --out DIR --status DIR --cache-key K`: what
  the train stage starts under torchrun when `training.distributed.nproc_per_node > 1`. Rank 0 writes the model
  folder and fitted.json into DIR (the stage's folder); every rank ends by writing its status
  (engine/launch.py), from which the stage says in one line how the job ended.
- `run_stage`, what `trainpipe stage` calls: outside torchrun, or with one process, `run_one_stage`. Under a
  torchrun the user started around `trainpipe stage train --run ID`, rank 0 is the stage itself (it fits in
  place, DDP from the environment) and ranks other than 0 go to `run_rank`.

A rank reads the run's recorded config (config.yaml, environment values read again) and the features from the
run folder: on several machines the store must be a shared folder. Only rank 0 writes anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from trainpipe.config import PipelineConfig
from trainpipe.errors import Preempted, TrainpipeError
from trainpipe.pipeline.driver import run_one_stage
from trainpipe.pipeline.run import Run
from trainpipe.stages import train
from trainpipe.stages.context import StageContext
from trainpipe.store import Store
from trainpipe.tasks import task_for


def rank_context(store: Store, run_id: str, out: Path, cache_key: str = "", config: PipelineConfig | None = None,
                 resume_anyway: bool = False, progress: bool = False) -> StageContext:
    """The train stage's context in a rank: no MLflow worker, no run lock (the stage process holds it)."""
    run_dir = store.run_dir(run_id)
    if config is None:
        config = Run._recorded_config(run_dir, json.loads((run_dir / "run.json").read_text()))
    return StageContext(run_id, run_dir, out, config, store, task_for(config), cache_key=cache_key,
                        resume_anyway=resume_anyway, progress=progress)


def train_rank(ctx: StageContext) -> None:
    """Fit in this rank; rank 0 saves the model and the fit's result where the train stage reads them."""
    from trainpipe.engine.distributed import this_process

    model, fitted = train.fit(ctx, train.plan(ctx), on_epoch=None)
    if this_process().is_main:
        model.save(ctx.stage_dir / "model")
        (ctx.stage_dir / "fitted.json").write_text(json.dumps(train.fitted_document(fitted)))


def run_rank(store: Store, run_id: str, name: str, config: PipelineConfig | None, resume_anyway: bool) -> dict:
    """A rank other than 0 of `torchrun ... trainpipe stage NAME --run ID`: train with rank 0 and write nothing.
    Stages other than train run in rank 0 alone: the other ranks have nothing to do."""
    from trainpipe.engine.distributed import NothingToTrain, this_process

    rank = this_process().rank
    if name != "train":
        return {"run_id": run_id, "stage": name, "status": "skipped", "rank": rank}
    with tempfile.TemporaryDirectory(prefix="trainpipe-rank-") as out:
        try:
            train_rank(rank_context(store, run_id, Path(out), config=config, resume_anyway=resume_anyway))
        except NothingToTrain:
            return {"run_id": run_id, "stage": name, "status": "released", "rank": rank}
    return {"run_id": run_id, "stage": name, "status": "trained", "rank": rank}


def run_stage(store: Store, run_id: str, name: str, config: PipelineConfig | None = None, use_cache: bool = True,
              on_event: Callable[[str, dict], None] | None = None, resume_anyway: bool = False,
              progress: bool = False) -> dict:
    """`trainpipe stage NAME --run ID`, in one process or as one rank of a torchrun job."""
    rank = torchrun_rank()
    if rank:
        return run_rank(store, run_id, name, config, resume_anyway)
    if rank is None or name != "train":
        return run_one_stage(store, run_id, name, config, use_cache, on_event, resume_anyway, progress)
    try:  # rank 0 of a torchrun job: whatever happens, no other rank is left waiting for it
        return run_one_stage(store, run_id, name, config, use_cache, on_event, resume_anyway, progress)
    finally:
        _release_other_ranks(store, run_id, config)


def torchrun_rank() -> int | None:
    """This process's rank when torchrun started it with several processes (WORLD_SIZE > 1), else None."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return None
    return int(os.environ.get("RANK", "0"))


def _release_other_ranks(store: Store, run_id: str, config: PipelineConfig | None) -> None:
    """Rank 0 ending its train stage without a fit (reused from the cache, failed before training): the other
    ranks wait for its word in the process group; tell them there is nothing to train."""
    from trainpipe.engine.distributed import this_process

    if config is None:
        with contextlib.suppress(Exception):  # an unreadable run has raised its own error already
            run_dir = store.run_dir(run_id)
            config = Run._recorded_config(run_dir, json.loads((run_dir / "run.json").read_text()))
    backend = config.training.distributed.backend if config is not None else "auto"
    device = str(config.model.params.get("device", "auto")) if config is not None else "auto"
    this_process().release_waiting(backend, device)


def main(argv: list[str] | None = None) -> int:
    from trainpipe.engine.distributed import NothingToTrain, this_process
    from trainpipe.engine.launch import write_status

    parser = argparse.ArgumentParser(prog="python -m trainpipe.pipeline.train_worker")
    parser.add_argument("--store", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--status", required=True, type=Path)
    parser.add_argument("--cache-key", default="")
    parser.add_argument("--resume-anyway", action="store_true")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    rank = this_process().rank
    statuses = args.status
    try:
        ctx = rank_context(Store(Path(args.store)), args.run_id, args.out, args.cache_key,
                           resume_anyway=args.resume_anyway, progress=args.progress)
        train_rank(ctx)
    except NothingToTrain:
        write_status(statuses, rank, "released")
        return 0
    except Preempted as exc:
        write_status(statuses, rank, "preempted", exc)
        return exc.exit_code
    except TrainpipeError as exc:
        write_status(statuses, rank, "error", exc)
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    # A bug, or a collective that failed because another rank died; its traceback goes to this
    # rank's status file (the stage's one line names it), not to the console
    except Exception as exc:  # noqa: BLE001
        write_status(statuses, rank, "error", exc, traceback.format_exc())
        return 1
    write_status(statuses, rank, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
