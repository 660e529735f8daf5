"""One tuning worker: load the study, optimise until a budget ends it. `--workers N` runs N of these.

The stage's own process is worker 0; workers 1..N-1 are `python -m trainpipe.stages.tune JOB INDEX`
processes (WORKER_ENTRY: the process entry sits with the tune stage, which may assemble the pipeline config
from the job; this building block may not) that read the same job file and share the storage. On Linux they die with their parent
(PR_SET_PDEATHSIG), so killing `trainpipe tune` leaves no orphan trials running: the rerun retries them.
With `tuning.trial_world_size` W > 1 every worker, 0 included, is a torchrun job of W ranks
(`python -m torch.distributed.run ... -m trainpipe.stages.tune JOB INDEX`, engine/launch.py's command) whose
rank 0 is the worker proper and whose other ranks fit the trials it announces (tuning/trial_ranks.py); the stage
process then only waits. torchrun dies with the stage and each rank with torchrun (PR_SET_PDEATHSIG on both).
Samplers are seeded with seed + worker index; trials interleave by timing, so with N > 1 workers the
sequence of trials (and possibly the best one) is not reproducible, the parameters of a given trial are.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from trainpipe.errors import ModelError, TrainpipeError

if TYPE_CHECKING:
    from trainpipe.tuning.objective import ObjectiveSettings, TrialData
    from trainpipe.tuning.trial_ranks import TrialRanks
    from trainpipe.tuning.tracking import TrialLogger

CONSOLE_PREFIX = "[default0]:"  # torchrun --tee: rank 0's lines in a DDP-trial worker's log (engine/launch.py)
JOB_ENV = "TRAINPIPE_TUNING_JOB"  # the job with its real values, passed from the stage to its workers
WORKER_ENTRY = "trainpipe.stages.tune"  # `python -m` this module runs `main` with the config assembly


@dataclass(frozen=True)
class WorkerJob:
    """What every worker of one study reads (written as job.json in the stage folder)."""

    config: dict  # the resolved pipeline config
    features_dir: str
    groups_file: str | None
    study_name: str
    storage: str
    metric: str
    direction: str
    threads: int
    parent_run_id: str | None = None
    experiment_id: str | None = None
    store_root: str | None = None  # the run's store (`--store` may differ from the config's `store:`)


def build_settings(config: Any, job: WorkerJob, info: dict) -> ObjectiveSettings:
    from trainpipe.tuning.objective import ObjectiveSettings
    from trainpipe.tuning.schedule import iteration_budget, pruner_settings
    from trainpipe.tuning.space import family_space

    tuning = config.tuning
    budget = iteration_budget(config.model.type, config.model.params, tuning.cv.folds)
    return ObjectiveSettings(
        task=config.task, family=config.model.type, base_params=dict(config.model.params),
        estimator=config.model.estimator, space=family_space(config), metric=job.metric, direction=job.direction,
        latency_objective=tuning.latency_objective, seed=config.seed, threads=job.threads,
        early_stopping_rounds=config.training.early_stopping_rounds,
        n_classes=len(info["labels"]["classes"] or []), categorical=info.get("categorical_codes"),
        pruner=pruner_settings(tuning.pruner, budget), cv_folds=tuning.cv.folds, cv_strategy=tuning.cv.strategy,
        trial_timeout=tuning.trial_timeout, usd_per_hour=tuning.cost.rate * tuning.trial_world_size,
        backend=config.training.distributed.backend)


def load_data(job: WorkerJob, settings: ObjectiveSettings) -> TrialData:
    from trainpipe.tuning.objective import TrialData, cv_folds

    folder = Path(job.features_dir)
    arrays = {n: np.load(folder / f"{n}.npy", allow_pickle=False)
              for n in ("X_train", "y_train", "X_validation", "y_validation")}
    groups = np.load(job.groups_file, allow_pickle=True) if job.groups_file else None
    data = TrialData(arrays["X_train"], arrays["y_train"], arrays["X_validation"], arrays["y_validation"], groups)
    if settings.cv_folds:
        data.folds = cv_folds(settings, np.concatenate([data.y_train, data.y_val]), groups)
    return data


def run_worker(job: WorkerJob, index: int, storage: Any = None, progress: bool = False, *, config: Any,
               ranks: TrialRanks | None = None) -> dict:
    """Optimise the shared study until n_trials, timeout, max_cost or repeated failures end it.
    config: the pipeline config built from `job.config`; progress: a live line of the study's trials on a
    terminal (the stage's own worker, without --json); ranks: this is rank 0 of DDP trials, which announces each
    trial to the other ranks and, when its loop ends normally, tells them it is done."""
    from trainpipe.tuning.budget import Budget
    from trainpipe.tuning.objective import make_objective
    from trainpipe.tuning.progress import TrialProgress
    from trainpipe.tuning.study import load_study, open_storage, recover_dead_trials

    tuning = config.tuning
    info = json.loads((Path(job.features_dir) / "features.json").read_text())
    settings = build_settings(config, job, info)
    data = load_data(job, settings)
    storage = storage or open_storage(job.storage, tuning, created=True)
    seed = (config.seed if tuning.seed is None else tuning.seed) + index
    study = load_study(job.study_name, storage, tuning, seed, settings.space, settings.pruner)
    recovered = recover_dead_trials(study, tuning.grace_period)
    budget = Budget(tuning.n_trials, tuning.timeout, tuning.max_cost)
    logger = _trial_logger(config, job)
    shown = TrialProgress(progress, study, tuning, job.metric)

    def recover(study: Any, trial: Any) -> None:  # another worker of this machine may have died meanwhile
        recovered.extend(recover_dead_trials(study, tuning.grace_period))

    try:
        if budget.remaining(study) > 0:
            study.optimize(make_objective(settings, data, ranks.announce if ranks is not None else None),
                           timeout=tuning.timeout, catch=(ModelError,),
                           callbacks=[c for c in (logger, recover if tuning.workers > 1 else None, shown,
                                                  budget.callback) if c is not None])
        if ranks is not None:  # only on a normal end: otherwise this rank exits non-zero and torchrun stops them
            ranks.finish()
    finally:
        shown.close()
        if logger is not None:
            logger.close()
    return {"worker": index, "stopped_by": budget.conclude(study), "trials_run": budget.ran, "recovered": recovered}


def _trial_logger(config: Any, job: WorkerJob) -> TrialLogger | None:
    if not (config.tracking.enabled and job.parent_run_id and job.experiment_id):
        return None
    from trainpipe.store import Store
    from trainpipe.tracking.tracker import Tracker
    from trainpipe.tuning.tracking import TrialLogger, metric_names

    store = Store.locate(job.store_root or config.store, config.tracking.uri)
    names = metric_names(job.metric, config.tuning.latency_objective)
    return TrialLogger(lambda: Tracker(store, config.tracking), job.experiment_id, job.parent_run_id, job.study_name,
                       names)


def _die_with_parent() -> Callable[[], Any] | None:
    """Linux: a preexec_fn making the kernel SIGKILL the worker when the process that started it dies. libc is
    loaded here, in the parent: the child runs only the prctl call (no imports: the stage has threads). A rank of
    a DDP-trial worker calls it on itself, against torchrun dying."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_workers(job_file: Path, count: int, log_dir: Path, job: WorkerJob, *, first: int = 1,
                  trial_world_size: int = 1) -> list[tuple[subprocess.Popen, Path]]:
    """Workers first..first+count-1 (by default worker 0 is the caller); each logs to its own file. The job with
    its real values (secrets included) reaches them through their environment: job.json holds the redacted
    record. With `trial_world_size` > 1 each is a torchrun job of that many ranks (rank 0's lines in its log,
    every rank's in torchrun's folder next to it)."""
    from trainpipe.engine.config import DistributedConfig
    from trainpipe.engine.launch import torchrun_command

    started, preexec = [], _die_with_parent() if count else None
    env = {**os.environ, "PYTHONUNBUFFERED": "1", JOB_ENV: json.dumps(asdict(job), default=str)}
    for index in range(first, first + count):
        log = log_dir / f"worker-{index}.log"
        command = [sys.executable, "-m", WORKER_ENTRY, str(job_file), str(index)]
        if trial_world_size > 1:
            command = torchrun_command(DistributedConfig(nproc_per_node=trial_world_size), job.study_name,
                                       log_dir / "torchrun" / f"worker-{index}", WORKER_ENTRY, command[3:])
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=preexec)  # noqa: PLW1509  (no imports or locks in the child)
        started.append((proc, log))
    return started


def wait_workers(started: list[tuple[subprocess.Popen, Path]]) -> list[dict]:
    results, errors = [], []
    for proc, log in started:
        code = proc.wait()
        result_file = log.with_suffix(".json")
        if code == 0 and result_file.exists():
            results.append(json.loads(result_file.read_text()))
        else:
            errors.append(f"{log.stem} exited {code}: {_last_word(log)}")
    if errors:
        raise ModelError(f"tuning: {errors[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                         key="tuning.workers")
    return results


def _last_word(log: Path) -> str:
    """Why a worker ended: its `error:` line (rank 0's, in a DDP-trial worker), else the rank torchrun names as the
    root cause of a failed job (a rank killed or crashed), else the log's last line."""
    text = log.read_text(errors="replace")
    lines = [line.removeprefix(CONSOLE_PREFIX) for line in text.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith("error:")]
    if said:
        return said[-1]
    cause = re.search(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", text, re.DOTALL)
    if cause:
        rank, code = int(cause.group(1)), int(cause.group(2))
        signals = {int(s): s.name for s in signal.Signals}
        how = f"was killed by {signals.get(-code, -code)}" if code < 0 else f"exited with code {code}"
        return f"trial process rank {rank} {how} (log {log})"
    return lines[-1] if lines else "no output"


def write_job(job: WorkerJob, path: Path, recorded_config: dict) -> None:
    """The job as a record in the stage folder: the redacted config, the storage URL without its password."""
    from trainpipe.redaction import redact_url_credentials

    record = {**asdict(job), "config": recorded_config, "storage": redact_url_credentials(job.storage)}
    path.write_text(json.dumps(record, default=str))


def main(argv: list[str], build_config: Callable[[dict], Any]) -> int:
    """A worker process: JOB_FILE INDEX; `build_config` turns the job's config dict into the pipeline config.
    Under torchrun (DDP trials) this is one rank: rank 0 optimises and writes the result, the others follow."""
    job_file, index = Path(argv[0]), int(argv[1])
    job = WorkerJob(**json.loads(os.environ.get(JOB_ENV) or job_file.read_text()))
    try:
        config = build_config(job.config)
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            result = run_ranks(job, index, config, job_file.parent)
            if result is None:  # a rank other than 0: rank 0 writes the worker's result
                return 0
        else:
            result = run_worker(job, index, config=config)
    except TrainpipeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    (job_file.parent / f"worker-{index}.json").write_text(json.dumps(result))
    return 0


def run_ranks(job: WorkerJob, index: int, config: Any, stage_dir: Path) -> dict | None:
    """One rank of a worker whose trials are DDP jobs (tuning/trial_ranks.py): rank 0 runs the worker and returns
    its result; the other ranks fit the trials rank 0 announces and return None."""
    from threadpoolctl import threadpool_limits

    from trainpipe.engine.distributed import this_process
    from trainpipe.tuning.objective import fit_model
    from trainpipe.tuning.trial_ranks import RECORDS, TrialRanks

    die = _die_with_parent()  # torchrun killed (with the stage): this rank dies too, no orphan
    if die is not None:
        die()
        if os.getppid() == 1:  # torchrun was already gone before the line above
            return None
    dist = this_process()
    ranks = TrialRanks(dist, stage_dir / RECORDS, index)
    ranks.join(config.training.distributed.backend, str(config.model.params.get("device", "auto")))
    if dist.is_main:
        return run_worker(job, index, config=config, ranks=ranks)
    info = json.loads((Path(job.features_dir) / "features.json").read_text())
    settings = build_settings(config, job, info)
    data = load_data(job, settings)
    with threadpool_limits(limits=settings.threads):
        ranks.follow(lambda params: fit_model(settings, params, data.X_train, data.y_train, data.X_val, data.y_val,
                                              None)[1])
    return None
