"""Where the local store lives and the URIs of its MLflow and Optuna databases.

The first open of a fresh MLflow SQLite store is guarded by a file lock: several processes
creating it at once corrupt it (see shared/FACTS.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STORE = ".trainpipe"


@dataclass(frozen=True)
class Store:
    root: Path
    tracking_uri_override: str | None = None

    @classmethod
    def locate(cls, configured: str | os.PathLike | None = None, tracking_uri: str | None = None) -> "Store":
        """Config `store:` wins, then TRAINPIPE_HOME, then ./.trainpipe."""
        raw = configured or os.environ.get("TRAINPIPE_HOME") or DEFAULT_STORE
        return cls(Path(raw).expanduser().resolve(), tracking_uri)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def tracking_uri(self) -> str:
        return self.tracking_uri_override or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def optuna_uri(self) -> str:
        return f"sqlite:///{self.root / 'optuna.db'}"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def ensure(self) -> "Store":
        for path in (self.runs_dir, self.cache_dir, self.artifacts_dir):
            path.mkdir(parents=True, exist_ok=True)
        return self

    def lock(self, name: str, timeout: float = 120.0):
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f".{name}.lock"), timeout=timeout)
