"""The team services, started once per test session by trainpipe's own `team up` code and stopped by PID at
the end. Skipped, with the reason, only where PostgreSQL cannot be had: no psycopg, or PostgreSQL missing and
this process unable to apt-get it (not root, no apt-get). Any other failure to start them fails the tests."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Team:
    dir: Path
    tracking_uri: str
    optuna_storage: str
    pgpass: Path
    pg_port: int
    mlflow_port: int

    @property
    def env(self) -> dict[str, str]:
        """What a client machine sets: PGPASSFILE (the URIs go in the YAML)."""
        return {**os.environ, "PGPASSFILE": str(self.pgpass), "COLUMNS": "200"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unavailable() -> str | None:
    import importlib.util

    from trainpipe.team.postgres import find_bindir

    if importlib.util.find_spec("psycopg") is None:
        return "team tests need the psycopg driver: pip install 'trainpipe[postgres]'"
    if find_bindir() is None and (os.geteuid() != 0 or shutil.which("apt-get") is None):
        return "PostgreSQL is not installed and cannot be installed here (needs root and apt-get)"
    return None


@pytest.fixture(scope="session")
def team() -> Team:
    from trainpipe.errors import ServiceError
    from trainpipe.team import processes
    from trainpipe.team.services import TeamSettings, down, up

    reason = _unavailable()
    if reason:
        pytest.fail(reason)
    folder = Path(tempfile.mkdtemp(prefix="tp-team-", dir="/tmp"))  # pytest's tmp folders are 0700: not for postgres
    folder.chmod(0o711)
    settings = TeamSettings(folder, pg_port=_free_port(), mlflow_port=_free_port(), workers=1)
    try:
        doc = up(settings)
    except ServiceError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if exc.message.startswith("apt-get"):
            pytest.fail(f"PostgreSQL could not be installed: {exc.message}")
        raise
    try:
        yield Team(folder, doc["tracking_uri"], doc["optuna_storage"], Path(doc["pgpass"]), settings.pg_port,
                   settings.mlflow_port)
    finally:
        stopped = down(folder)
        shutil.rmtree(folder, ignore_errors=True)
    assert stopped["stopped"] == {"mlflow": True, "postgres": True}
    assert not processes.alive(doc["postgres"]) and not processes.alive(doc["mlflow"])
