"""Exceptions a user can cause. Each carries one line that names the key, column or file."""

from __future__ import annotations

from typing import Any


class TrainpipeError(Exception):
    """Base for every error the user can fix; the CLI prints it as one line and exits `exit_code`."""

    exit_code = 2

    def __init__(self, message: str, key: str | None = None, lines: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.key = key
        # Several independent problems found together (e.g. config or data checks), one per line.
        self.lines = lines or [message]

    def to_json(self) -> dict:
        doc: dict[str, Any] = {"error": self.message, "key": self.key, "type": type(self).__name__}
        if len(self.lines) > 1:
            doc["errors"] = self.lines
        return doc


class ConfigError(TrainpipeError):
    """The YAML file, a --set override or a config value is wrong."""


class DataError(TrainpipeError):
    """A data file is missing, unreadable or empty."""


class ValidationFailed(TrainpipeError):
    """The data does not match the schema or the label checks."""


class SplitError(TrainpipeError):
    """The split cannot give usable train/validation/test sets."""


class ModelError(TrainpipeError):
    """The model section names something that cannot be built or trained."""


class RunError(TrainpipeError):
    """A run id, stage name or run folder is wrong (resume, stage, compare)."""


class MissingDependency(TrainpipeError):
    """An optional library is not installed; the message names the extra to install."""


class Preempted(TrainpipeError):
    """SIGTERM (e.g. spot preemption) stopped training after a checkpoint; `--resume` continues it."""

    exit_code = 143


class BudgetExceeded(TrainpipeError):
    """`budget.max_cost` or `budget.max_minutes` was reached: training stopped after a checkpoint (torch) or
    between two boosting rounds; `--resume` continues from that checkpoint with a new allowance."""


class GateFailed(TrainpipeError):
    """The model did not earn its place (thresholds, slices or the champion); nothing was registered."""

    exit_code = 3

    def __init__(self, message: str, key: str | None = None, decision: dict | None = None):
        super().__init__(message, key=key)
        self.decision = decision or {}

    def to_json(self) -> dict:
        return {**super().to_json(), "decision": self.decision}


class RegistryError(TrainpipeError):
    """A registered model, version or alias is missing, moved concurrently, or fails its checksum."""


class ServiceError(TrainpipeError):
    """A team service (PostgreSQL, the MLflow tracking server) cannot be installed, started, reached or stopped."""


class StorageError(TrainpipeError):
    """The store cannot be written or read: the disk is full, it is read-only, or a database file is damaged."""


# errno values that mean "the storage, not trainpipe": ENOSPC, EDQUOT, EFBIG (a file size limit), EROFS, EIO
_STORAGE_ERRNOS = {28: "no space left on the device", 122: "disk quota exceeded", 27: "file too large (a file size "
                   "limit was reached)", 30: "the file system is read-only", 5: "input/output error"}
# what SQLite (through sqlite3, SQLAlchemy or MLflow) says for the same problems
_SQLITE_MESSAGES = {"database or disk is full": "no space left on the device",
                    "attempt to write a readonly database": "the file system is read-only",
                    "database disk image is malformed": "the database file is damaged (a corrupted page)",
                    "file is not a database": "the database file is damaged (not SQLite)",
                    "disk i/o error": "input/output error"}


def storage_problem(exc: BaseException) -> str | None:
    """One line for an error that the storage caused (full, read-only, damaged), else None. Walks the
    exception's causes: MLflow wraps SQLAlchemy, which wraps sqlite3."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _STORAGE_ERRNOS:
            where = current.filename or "the store"
            return f"cannot write {where}: {_STORAGE_ERRNOS[current.errno]}"
        text = str(current).lower()
        for needle, meaning in _SQLITE_MESSAGES.items():
            if needle in text:
                database = next((w.strip("'\"(),") for w in str(current).split() if w.strip("'\"(),").endswith(".db")),
                                "the MLflow database")
                return f"{database}: {meaning}"
        current = current.__cause__ or current.__context__
    return None
