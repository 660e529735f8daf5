"""Where the local store lives and the URIs of its MLflow and Optuna databases.

The first open of a fresh MLflow SQLite store is guarded by a file lock: several processes
creating it at once corrupt it (see shared/FACTS.md). A run id becomes a path in one place only,
`Store.run_dir`, which refuses any id that is not a plain name inside `<store>/runs/`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from pathlib import Path

from trainpipe.errors import RunError

if TYPE_CHECKING:
    from filelock import FileLock

DEFAULT_STORE = ".trainpipe"
# A run id is a folder name, a MLflow run name and a word in shell commands trainpipe prints: no
# separators, no leading dot or dash (hidden files, options), nothing a shell or a terminal reads.
RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
RUN_ID_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
_RUN_ID = re.compile(RUN_ID_PATTERN)


def is_run_id(text: object) -> bool:
    return isinstance(text, str) and _RUN_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class Store:
    root: Path
    tracking_uri_override: str | None = None

    @classmethod
    def locate(cls, configured: str | os.PathLike | None = None, tracking_uri: str | None = None,
               source: str = "store") -> "Store":
        """Config `store:` wins, then TRAINPIPE_HOME, then ./.trainpipe.

        source: what set `configured`, as the error should name it (`store`, `--store`).
        """
        if configured:
            raw = configured
        elif os.environ.get("TRAINPIPE_HOME"):
            raw, source = os.environ["TRAINPIPE_HOME"], "TRAINPIPE_HOME"
        else:
            raw, source = DEFAULT_STORE, f"the default store ./{DEFAULT_STORE}"
        root = Path(raw).expanduser().resolve()
        _check_folder(root, source)
        return cls(root, tracking_uri)

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

    def run_dir(self, run_id: str, option: str = "run id") -> Path:
        """The folder of run `run_id`, always directly inside `<store>/runs/`; `option` names where the id
        came from (`--run-id`, `--resume`, `--run`) in the one-line error for an id that is not one."""
        if not is_run_id(run_id):
            raise RunError(f"{option}: {run_id!r} is not a run id ({RUN_ID_RULE})", key=option)
        path = self.runs_dir / run_id
        if path.resolve().parent != self.runs_dir.resolve():  # e.g. a symlink planted in runs/
            raise RunError(f"{option}: run folder {path} resolves to {path.resolve()}, outside {self.runs_dir}",
                           key=option)
        return path

    def ensure(self) -> "Store":
        for path in (self.runs_dir, self.cache_dir, self.artifacts_dir):
            path.mkdir(parents=True, exist_ok=True)
        return self

    def lock(self, name: str, timeout: float = 120.0) -> FileLock:
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f".{name}.lock"), timeout=timeout)


def _check_folder(root: Path, source: str) -> None:
    """The store must be a folder, or a path where one can be created: a file there (or above it) is refused."""
    from trainpipe.errors import ConfigError

    for path in (root, *root.parents):
        if path.exists():
            if not path.is_dir():
                where = "is a file" if path == root else f"is under {path}, which is a file"
                raise ConfigError(f"{source}: the store {root} {where}; point it at a folder (created if missing)",
                                  key="store")
            return
