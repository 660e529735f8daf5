"""The study: its name, its RDB storage (with heartbeats), sampler and pruner, and its summary.

A study is created once, by the process that starts the workers, before they start: several processes
creating Optuna's tables or one study in a fresh database at once fail (`table ... already exists`,
`UNIQUE constraint failed: alembic_version...`; shared/FACTS.md). So `open_study` creates both under a file
lock next to a local SQLite file, and retries on exactly those errors for a database server, where another
machine may be creating them at the same moment (the loser finds them made). Every worker runs with heartbeats, so
a trial left RUNNING by a killed process is failed after `grace_period` and retried with the same
parameters; on this host a dead worker's trial is recognised at once by its process id.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from trainpipe.errors import ConfigError
from trainpipe.tuning.search import make_pruner, make_sampler, quiet_optuna

if TYPE_CHECKING:
    from trainpipe.tuning.config import TuningConfig

FINISHED = ("COMPLETE", "PRUNED")
# What a process sees when another creates the same tables, version rows or study at the same moment: SQLite,
# PostgreSQL and MySQL spellings. Creation is idempotent, so trying again after one of these succeeds.
CREATION_RACES = ("already exists", "UNIQUE constraint failed", "duplicate key value violates unique constraint",
                  "Duplicate entry", "DuplicateTable")
CREATION_ATTEMPTS = 6


def redact(url: str) -> str:
    """A storage URL fit for logs and tags: the password is replaced (trainpipe/redaction.py)."""
    from trainpipe.redaction import redact_url_credentials

    return redact_url_credentials(url)


def study_name(config: Any, features_identity: str) -> str:
    """Same data, model and search settings → same study, whatever the budget; so a rerun continues it."""
    from trainpipe.hashing import canonical_hash

    if config.tuning.study_name:
        return config.tuning.study_name
    tuning = config.tuning.model_dump(mode="json", exclude={"n_trials", "timeout", "max_cost", "workers", "cost",
                                                            "trial_world_size",
                                                            "enabled", "storage", "heartbeat_interval",
                                                            "grace_period", "retrain_on", "trial_timeout"})
    doc = {"features": features_identity, "model": config.model.model_dump(mode="json"), "task": config.task,
           "seed": config.seed, "early_stopping": config.training.early_stopping_rounds, "tuning": tuning}
    return f"{config.name}-{canonical_hash(doc)[:12]}"


def check_storage_url(url: str) -> None:
    """A malformed URL or a missing database driver, found before any work (no connection is made)."""
    from sqlalchemy.engine import make_url

    from trainpipe.tracking.dburl import require_driver

    try:
        make_url(url)
    except Exception as exc:
        raise ConfigError(f"tuning.storage: not a usable SQLAlchemy URL {redact(url)!r}: {exc}",
                          key="tuning.storage") from exc
    require_driver(url, "tuning.storage")


def open_storage(url: str, tuning: TuningConfig, created: bool = False) -> Any:
    """RDBStorage with heartbeats; an SQLite file gets a 30 s lock timeout and WAL journaling.
    `created`: the tables exist (a worker started after the study was created) and need no check.
    A creation race (see CREATION_RACES) is raised as it is, for `open_study` to retry."""
    from trainpipe.tracking.dburl import normalize, require_driver

    optuna = quiet_optuna()
    require_driver(url, "tuning.storage")
    url = normalize(url)  # postgresql:// -> psycopg 3, the driver trainpipe[postgres] installs
    if url.startswith("sqlite:///"):
        _prepare_sqlite(Path(url.removeprefix("sqlite:///")))
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 30}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        storage = optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=tuning.heartbeat_interval,
            grace_period=tuning.grace_period, skip_table_creation=created, skip_compatibility_check=created,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
        if url.startswith("sqlite:///"):
            _fewer_syncs(storage.engine)
        return storage
    except Exception as exc:
        if is_creation_race(exc):
            raise
        raise ConfigError(f"tuning.storage: cannot open {redact(url)}: {_first_line(exc)}", key="tuning.storage") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def is_creation_race(exc: BaseException | None) -> bool:
    """Whether `exc` (or what caused it) is another process creating the same tables or study."""
    seen = 0
    while exc is not None and seen < 5:
        if any(text in str(exc) for text in CREATION_RACES) or type(exc).__name__ == "DuplicatedStudyError":
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


def creation_lock(url: str) -> contextlib.AbstractContextManager:
    """A file lock next to a local SQLite database (`.<file>.lock`); nothing for a server: its callers retry."""
    if not url.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from filelock import FileLock

    path = Path(url.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(f".{path.name}.lock")), timeout=120)


def open_study(url: str, tuning: TuningConfig, name: str, direction: str,
               attrs: dict | None = None) -> tuple[Any, Any]:
    """(storage, study): Optuna's tables and the study created once, whoever else starts at the same moment.
    Call it inside `creation_lock(url)`; for a server the creation is retried on CREATION_RACES."""
    for attempt in range(CREATION_ATTEMPTS):
        try:
            storage = open_storage(url, tuning)
            return storage, create_study(name, storage, tuning, direction, attrs)
        except Exception as exc:
            if not is_creation_race(exc):
                raise
            if attempt == CREATION_ATTEMPTS - 1:
                raise ConfigError(f"tuning.storage: could not create study {name} in {redact(url)}: another process "
                                  f"kept creating it ({CREATION_ATTEMPTS} tries): {_first_line(exc)}",
                                  key="tuning.storage") from exc
            time.sleep(min(0.2 * 2 ** attempt, 3.0) * random.uniform(0.5, 1.5))  # jitter: racers spread out
    raise AssertionError("unreachable")


def _fewer_syncs(engine: Any) -> None:
    """WAL with synchronous=NORMAL: a commit no longer waits for the disk (each trial makes ~20: parameters,
    reports, attributes). A killed process loses nothing; only a power cut can lose the last commits."""
    from sqlalchemy import event

    event.listen(engine, "connect", lambda connection, _: connection.execute("PRAGMA synchronous=NORMAL"))
    engine.dispose()  # connections opened while the storage was set up reconnect with the pragma


def _prepare_sqlite(path: Path) -> None:
    """WAL: readers (the dashboard, other workers) do not block the writer; a write costs about half."""
    import sqlite3

    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def directions(tuning: TuningConfig, direction: str) -> list[str]:
    return [direction, "minimize"] if tuning.latency_objective else [direction]


def create_study(name: str, storage: Any, tuning: TuningConfig, direction: str, attrs: dict | None = None) -> Any:
    """Create the study (or load it when it exists) and set its attributes once; `open_study` calls it."""
    optuna = quiet_optuna()
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                directions=directions(tuning, direction))
    for key, value in (attrs or {}).items():
        if study.user_attrs.get(key) is None:
            study.set_user_attr(key, value)
    return study


def load_study(name: str, storage: Any, tuning: TuningConfig, seed: int, space: dict, pruner: dict[str, Any]) -> Any:
    optuna = quiet_optuna()
    return optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(tuning, space, seed),
                             pruner=make_pruner(pruner))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead(trial: Any, host: str, grace_period: float, now: datetime.datetime) -> bool:
    worker = str(trial.user_attrs.get("worker", ""))
    if not worker:  # killed between Optuna's ask and the objective's first line: no heartbeat was ever written
        started = trial.datetime_start
        return started is not None and (now - started).total_seconds() > grace_period
    trial_host, _, pid = worker.rpartition(":")
    return trial_host == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))


def recover_dead_trials(study: Any, grace_period: float, now: datetime.datetime | None = None) -> list[int]:
    """Fail and retry RUNNING trials whose worker process on this host is gone, without waiting out the
    heartbeat grace period, and those killed before their first heartbeat (which Optuna never finds stale).
    Trials of live workers on other hosts are left to the heartbeat."""
    optuna = quiet_optuna()
    from optuna.trial import TrialState

    host, recovered, now = socket.gethostname(), [], now or datetime.datetime.now()
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    grid = isinstance(study.sampler, optuna.samplers.GridSampler)  # tuning/grid.py's GridInTrialOrder
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _dead(trial, host, grace_period, now):
            continue
        if grid and "grid_id" not in trial.system_attrs:
            # Killed before the grid sampler gave it its point: give it now, so its retry runs the point the killed
            # trial was due and a resumed grid keeps the uninterrupted order
            study.sampler.before_trial(study, trial)
        if study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            retry(study, study._storage.get_trial(trial._trial_id))
            recovered.append(trial.number)
    return recovered


def _engine(study: Any) -> Any:
    """The SQLAlchemy engine of an RDB storage (None for others). Counting through Optuna's API rebuilds every
    trial of the study (~13 ms per call at 20 trials, growing with the study): budgets check after each trial."""
    storage = getattr(study._storage, "_backend", study._storage)
    return getattr(storage, "engine", None)


def counts(study: Any) -> dict[str, int]:
    """Trials by state name."""
    engine = _engine(study)
    if engine is not None:  # one COUNT query on Optuna's own tables
        from sqlalchemy import text

        with engine.connect() as connection:
            rows = connection.execute(text("SELECT state, COUNT(*) FROM trials WHERE study_id = :id GROUP BY state"),
                                      {"id": study._study_id}).fetchall()
        return {(state.name if hasattr(state, "name") else str(state)): int(n) for state, n in rows}
    out: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        out[trial.state.name] = out.get(trial.state.name, 0) + 1
    return out


def finished(study: Any) -> int:
    c = counts(study)
    return sum(c.get(s, 0) for s in FINISHED)


def wait_for_running(study: Any, grace_period: float, poll_s: float = 0.5,
                     on_wait: Callable[[int], None] | None = None) -> None:
    """Wait until no trial of the study is RUNNING: a worker whose own trials were all pruned may stop (the
    study's n_trials reached) while another worker's trial, which may complete, still runs. A dead worker's trial
    is failed here (this host) or by its stale heartbeat (other hosts), so the wait ends.
    `on_wait(n)`: called once, with the number of running trials, when there is something to wait for."""
    optuna = quiet_optuna()
    told = False
    while True:
        running = counts(study).get("RUNNING", 0)  # one COUNT query a poll, not every trial rebuilt
        if not running:
            return
        if on_wait is not None and not told:
            on_wait(running)
            told = True
        recover_dead_trials(study, grace_period)
        optuna.storages.fail_stale_trials(study)  # does nothing without heartbeats
        time.sleep(poll_s)


def best_trial(study: Any, direction: str) -> Any:
    """Single objective: Optuna's best. Two objectives: the Pareto-optimal trial best on the metric."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    if len(study.directions) == 1:
        return study.best_trial
    pick = max if direction == "maximize" else min
    return pick(study.best_trials, key=lambda t: t.values[0])


def total_cost(study: Any) -> float:
    """USD spent by the study's trials (their `trainpipe.cost_usd` attribute)."""
    import json

    engine = _engine(study)
    if engine is not None:
        from sqlalchemy import text

        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT a.value_json FROM trial_user_attributes a JOIN trials t ON a.trial_id = t.trial_id "
                "WHERE t.study_id = :id AND a.key = 'trainpipe'"), {"id": study._study_id}).fetchall()
        return float(sum(json.loads(value).get("cost_usd", 0.0) for (value,) in rows))
    return float(sum(t.user_attrs.get("trainpipe", {}).get("cost_usd", 0.0) for t in study.get_trials(deepcopy=False)))
