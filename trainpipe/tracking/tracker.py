"""MLflow tracking through MlflowClient (no global active-run state), batched, with retries.

The first open of a fresh SQLite store is serialised with a file lock: concurrent first opens
corrupt the schema (shared/FACTS.md). Writes that hit `database is locked` are retried.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from trainpipe.errors import ConfigError
from trainpipe.redaction import redact_url_credentials
from trainpipe.store import Store
from trainpipe.tracking.config import TrackingConfig
from trainpipe.tracking.dburl import is_postgres, normalize, require_driver

T = TypeVar("T")

PARAMS_PER_BATCH = 100  # MLflow's log_batch limits
METRICS_PER_BATCH = 1000
MAX_PARAM_LENGTH = 6000


def param_key(key: str) -> str:
    """MLflow accepts only [A-Za-z0-9_-. :/] in names; a column like `radius (mm)` becomes `radius _mm_`."""
    return re.sub(r"[^\w\-. :/]", "_", key)


HISTORY_PREFIX = "history/"


def history_key(name: str) -> str:
    """The MLflow key of a per-iteration value (boosting round, epoch, a trial's intermediate value):
    `history/validation_log_loss`. A namespace of its own, because MLflow shows a metric's value at its latest
    step: sharing evaluate's `validation_log_loss` key, the last epoch would hide the evaluated model's value.
    The UI groups `history/` curves in their own section; final metrics keep the plain names."""
    return HISTORY_PREFIX + param_key(name)


def flatten(doc: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.update(flatten(value, f"{prefix}{key}."))
    else:
        out[param_key(prefix.rstrip("."))] = str(doc)[:MAX_PARAM_LENGTH]
    return out


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _retry(fn: Callable[[], T], attempts: int = 5) -> T:
    delay = 0.5
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # MlflowException wraps sqlite's OperationalError
            if "database is locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable: the last attempt returns or raises")


def _template_path() -> Path:
    import mlflow

    cache = Path(os.environ.get("TRAINPIPE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                 / "trainpipe")
    return cache / f"mlflow-{mlflow.__version__}-empty.db"


def new_sqlite_store(db: Path, store: Store) -> None:
    """Create an empty MLflow SQLite store by copying a per-MLflow-version template.

    Running MLflow's alembic migrations takes ~1.5 s per fresh store; the template is built once per
    machine with those same migrations, so the copy is identical to what MLflow would create. The
    Default experiment's artifact location (MLflow puts it under the working directory) is pointed
    into the store.
    """
    import sqlite3

    from mlflow.tracking import MlflowClient

    template = _template_path()
    try:
        if not template.exists():
            template.parent.mkdir(parents=True, exist_ok=True)
            building = template.with_name(f"{template.name}.{os.getpid()}.tmp")
            building.unlink(missing_ok=True)
            MlflowClient(tracking_uri=f"sqlite:///{building}").search_experiments(max_results=1)
            os.replace(building, template)
        shutil.copyfile(template, db)
    except OSError:
        db.unlink(missing_ok=True)  # no writable cache: let MLflow create the store itself
        return
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                           ((store.artifacts_dir / "0").as_uri(),))


class Tracker:
    """A thin, explicit wrapper over one MLflow store."""

    def __init__(self, store: Store, config: TrackingConfig):
        import logging

        from mlflow.tracking import MlflowClient

        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        # MLflow draws a tqdm bar for every artifact download (registry, champion loading) on stderr
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # ... and, on a tracking server, two "View run" lines on stdout per terminated run (every tuning trial)
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.uri = config.uri or store.tracking_uri
        if is_postgres(self.uri):  # a database straight from this machine (no tracking server)
            require_driver(self.uri, "tracking.uri")
            self.uri = normalize(self.uri)
        if _is_server(self.uri):
            probe_server(self.uri)
        try:
            if self.uri.startswith("sqlite:///"):
                db = Path(self.uri.removeprefix("sqlite:///"))
                marker = db.with_name(db.name + ".ready")
                if not marker.exists():
                    db.parent.mkdir(parents=True, exist_ok=True)
                    with store.lock("mlflow"):
                        if not db.exists():
                            new_sqlite_store(db, store)
                        client = MlflowClient(tracking_uri=self.uri)
                        client.search_experiments(max_results=1)  # runs the schema migrations once
                        marker.touch()
            self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(redact_url_credentials(f"tracking.uri: cannot open the MLflow store at {self.uri}: {detail}"),
                              key="tracking.uri") from exc
        self.store = store

    def experiment_id(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found:
            return found.experiment_id
        try:
            # A database URI (SQLite by default): artifacts go into the store folder. A tracking server decides
            # its own artifact root (docs/team.md: proxied, so clients on other machines can read them).
            location = None if _is_server(self.uri) else (self.store.artifacts_dir / name.replace("/", "_")).as_uri()
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:
            found = self.client.get_experiment_by_name(name)  # created concurrently by another process
            if found:
                return found.experiment_id
            raise

    def start_run(self, experiment: str, run_name: str, tags: dict[str, str]) -> str:
        run = _retry(lambda: self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags))
        return run.info.run_id

    def reopen(self, run_id: str) -> None:
        _retry(lambda: self.client.update_run(run_id, status="RUNNING"))

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for chunk in _chunks(items, PARAMS_PER_BATCH):
            _retry(functools.partial(self.client.log_batch, run_id, params=chunk))

    def log_metrics(self, run_id: str, values: dict[str, float], step: int = 0) -> None:
        """Final values (evaluate's metrics, train_seconds...) under their own names."""
        self._log_steps(run_id, {param_key(k): [v] for k, v in values.items()}, first_step=step)

    def log_history(self, run_id: str, history: dict[str, list[float]], first_step: int = 0,
                    skip_logged: bool = False) -> None:
        """Per-iteration values, one step per iteration, under `history_key(name)`, in a few log_batch calls
        (one call per value costs ~3 ms). skip_logged: leave out the steps each metric already has in MLflow
        (epochs logged live, possibly by a process killed before a resume)."""
        self._log_steps(run_id, {history_key(k): v for k, v in history.items()}, first_step, skip_logged)

    def _log_steps(self, run_id: str, series: dict[str, list[float]], first_step: int = 0,
                   skip_logged: bool = False) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        logged = {key: ({m.step for m in _retry(functools.partial(self.client.get_metric_history, run_id, key))}
                        if skip_logged else set()) for key in series}
        items = [Metric(key, float(v), now, first_step + step) for key, values in series.items()
                 for step, v in enumerate(values) if v == v and first_step + step not in logged[key]]
        for chunk in _chunks(items, METRICS_PER_BATCH):
            _retry(functools.partial(self.client.log_batch, run_id, metrics=chunk))

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(param_key(k), str(v)[:5000]) for k, v in tags.items()]
        for chunk in _chunks(items, PARAMS_PER_BATCH):
            _retry(functools.partial(self.client.log_batch, run_id, tags=chunk))

    def log_artifacts(self, run_id: str, paths: list[Path], artifact_path: str) -> None:
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=f"{artifact_path}/{path.name}")
            elif path.exists():
                self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)

    def finish(self, run_id: str, status: str, error: str | None = None) -> None:
        if error:
            self.set_tags(run_id, {"trainpipe.error": error})
        _retry(lambda: self.client.set_terminated(run_id, status=status))


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def probe_server(uri: str, timeout: float = 10.0) -> None:
    """One GET before any work: MLflow's own client retries a server that is down for minutes (4 min 17 s
    measured) and then fails the run after its stages. Any HTTP answer, even an error status, means it is up."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    shown = parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")).geturl()
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"tracking.uri: the MLflow tracking server at {shown} does not answer ({reason}); is it "
                          "running? (`trainpipe team status` for one started by `trainpipe team up`)",
                          key="tracking.uri") from None


def open_tracker(store: Store, config: TrackingConfig) -> Tracker | None:
    return Tracker(store, config) if config.enabled else None
