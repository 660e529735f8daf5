"""The MLflow tracking server: `mlflow server` on loopback, PostgreSQL as its backend and registry store.

Artifacts are proxied (`--serve-artifacts`, destination `<team dir>/artifacts`): clients upload and download
models through the server's HTTP API, so a machine needs no shared filesystem and no storage credentials,
only the tracking URI. The database password reaches the server through PGPASSFILE, never on its command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from trainpipe.errors import ServiceError
from trainpipe.team import processes


def start(backend_uri: str, artifacts: Path, host: str, port: int, workers: int, log: Path,
          pgpass: Path) -> subprocess.Popen:
    artifacts.mkdir(parents=True, exist_ok=True)
    # MLflow's job runner (GenAI prompt optimisation, trace roll-ups) is a third Python process trainpipe never
    # uses: off, so the server starts sooner and holds less memory
    env = {**os.environ, "PGPASSFILE": str(pgpass), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, "--serve-artifacts",
            "--artifacts-destination", str(artifacts), "--host", host, "--port", str(port), "--workers", str(workers)]
    return processes.spawn(args, log, env=env)


def healthy(uri: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(proc: subprocess.Popen, uri: str, log: Path, timeout: float = 180.0) -> None:
    """The first start creates MLflow's tables in PostgreSQL (alembic migrations): allow it a while."""
    deadline = time.monotonic() + timeout
    while not healthy(uri):
        if proc.poll() is not None:
            raise ServiceError(f"the MLflow server exited at start (code {proc.returncode}): {_error_line(log)}",
                               key="mlflow")
        if time.monotonic() > deadline:
            raise ServiceError(f"the MLflow server did not answer {uri}/health within {timeout:.0f}s: "
                               f"{_error_line(log)}", key="mlflow")
        time.sleep(0.25)


def _error_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["no log"])[-1]


def stop(rec: dict | None) -> bool:
    """SIGTERM to the server's process group (the CLI and its uvicorn workers), SIGKILL after 15 s."""
    return processes.stop(rec, signal.SIGTERM, then=signal.SIGKILL, wait=15.0, group=True)
