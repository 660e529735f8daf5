"""`trainpipe team up|down|status`: PostgreSQL plus an MLflow tracking server on loopback, under one folder.

    <dir>/postgres/   the cluster (owned by the OS user `postgres` when run as root)
    <dir>/run/        its Unix socket (superuser access, peer authentication only)
    <dir>/artifacts/  what the MLflow server stores for its clients (--serve-artifacts)
    <dir>/logs/       postgres.log, mlflow.log
    <dir>/pgpass      the two roles' passwords in libpq's .pgpass format, mode 0600
    <dir>/team.json   what `up` started: PIDs with their start times, ports, URIs (no secrets)

Passwords come from TRAINPIPE_MLFLOW_DB_PASSWORD / TRAINPIPE_OPTUNA_DB_PASSWORD when set, else from the
existing pgpass, else are generated; clients and the MLflow server read them through PGPASSFILE, so no URL,
YAML, run folder or log ever holds one. `down` stops only the processes recorded in team.json.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trainpipe import files
from trainpipe.errors import ServiceError
from trainpipe.team import mlflow_server, postgres, processes

HOST = "127.0.0.1"
DATABASES = {"mlflow": "trainpipe_mlflow", "optuna": "trainpipe_optuna"}  # role name = database name
PASSWORD_ENV = {"mlflow": "TRAINPIPE_MLFLOW_DB_PASSWORD", "optuna": "TRAINPIPE_OPTUNA_DB_PASSWORD"}


@dataclass(frozen=True)
class TeamSettings:
    dir: Path
    pg_port: int = 5433
    mlflow_port: int = 5000
    workers: int = 2
    install: bool = True

    @property
    def data(self) -> Path:
        return self.dir / "postgres"

    @property
    def sockets(self) -> Path:
        return self.dir / "run"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def pgpass(self) -> Path:
        return self.dir / "pgpass"

    @property
    def state_file(self) -> Path:
        return self.dir / "team.json"


def database_url(name: str, port: int) -> str:
    return f"postgresql+psycopg://{DATABASES[name]}@{HOST}:{port}/{DATABASES[name]}"


def read_state(folder: Path) -> dict:
    try:
        return json.loads((folder / "team.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_state(settings: TeamSettings, state: dict) -> None:
    files.write_text(settings.state_file, json.dumps(state, indent=2, sort_keys=True) + "\n")


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _read_pgpass(path: Path) -> dict[str, str]:
    """{role: password} from our own pgpass (fields are host:port:database:user:password, `\\:` escaped)."""
    found: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        fields: list[str] = []
        current, escaped = "", False
        for char in line:
            if escaped:
                current, escaped = current + char, False
            elif char == "\\":
                escaped = True
            elif char == ":":
                fields, current = fields + [current], ""
            else:
                current += char
        fields.append(current)
        if len(fields) == 5 and not line.startswith("#"):
            found[fields[3]] = fields[4]
    return found


def _passwords(settings: TeamSettings) -> dict[str, str]:
    known = _read_pgpass(settings.pgpass)
    return {name: os.environ.get(PASSWORD_ENV[name]) or known.get(DATABASES[name]) or secrets.token_urlsafe(24)
            for name in DATABASES}


def _write_pgpass(settings: TeamSettings, passwords: dict[str, str]) -> None:
    lines = [":".join(_pgpass_escape(v) for v in (HOST, str(settings.pg_port), DATABASES[n], DATABASES[n], pw))
             for n, pw in passwords.items()]
    fd = os.open(settings.pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # libpq ignores a wider mode
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    os.chmod(settings.pgpass, 0o600)


def _port_free(port: int, option: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            raise ServiceError(f"{option}: port {port} on {HOST} is in use; choose another {option}",
                               key=option) from None


def summary(settings: TeamSettings, state: dict) -> dict:
    return {"dir": str(settings.dir), "tracking_uri": state.get("tracking_uri"),
            "optuna_storage": state.get("optuna_storage"), "pgpass": str(settings.pgpass),
            "env": {"PGPASSFILE": str(settings.pgpass)},
            "postgres": {**(state.get("postgres") or {}), "running": processes.alive(state.get("postgres"))},
            "mlflow": {**(state.get("mlflow") or {}), "running": processes.alive(state.get("mlflow"))}}


def up(settings: TeamSettings, say: Callable[[str], None] = lambda _: None) -> dict:
    """Start whatever of PostgreSQL and the MLflow server is not running; idempotent. On failure, stop what
    this call started and raise (nothing half-started stays behind)."""
    from trainpipe.tracking.dburl import require_psycopg

    require_psycopg("team")  # the MLflow server and every Optuna worker connect with psycopg
    topmost = next((p for p in [*reversed(settings.dir.parents), settings.dir] if not p.exists()), settings.dir)
    ours = [topmost, settings.data, settings.sockets, settings.logs, settings.dir / "artifacts", settings.pgpass]
    new = [path for path in ours if not path.exists()]  # removed again if this call fails
    settings.dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    state = read_state(settings.dir)
    started: list[Callable[[], bool]] = []
    try:
        if not processes.alive(state.get("postgres")):
            state["postgres"] = _up_postgres(settings, say)
            started.append(functools.partial(postgres.stop, state["postgres"]))
        else:
            _ensure_roles(settings, state["postgres"]["port"])
        state["optuna_storage"] = database_url("optuna", state["postgres"]["port"])
        _write_state(settings, state)
        if not processes.alive(state.get("mlflow")):
            state["mlflow"] = _up_mlflow(settings, state["postgres"]["port"], say)
            started.append(functools.partial(mlflow_server.stop, state["mlflow"]))
        state["tracking_uri"] = f"http://{HOST}:{state['mlflow']['port']}"
        _write_state(settings, state)
    except BaseException:
        for undo in reversed(started):
            undo()
        for path in new:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise
    return {**summary(settings, state), "started": len(started)}


def _up_postgres(settings: TeamSettings, say: Callable[[str], None]) -> dict:
    bindir = postgres.binaries(settings.install, say)
    user = postgres.os_user()
    _port_free(settings.pg_port, "--pg-port")
    postgres.socket_dir_ok(settings.sockets, settings.pg_port)
    postgres.prepare_dirs(settings.data, settings.sockets, user)
    if not postgres.initialised(settings.data):
        say(f"initialising a PostgreSQL cluster in {settings.data}")
        postgres.init_cluster(bindir, settings.data, user)
    say(f"starting PostgreSQL on {HOST}:{settings.pg_port}")
    log = settings.logs / "postgres.log"
    proc = postgres.start(bindir, settings.data, settings.sockets, settings.pg_port, log, user)
    rec = {**processes.record(proc.pid), "port": settings.pg_port, "bindir": str(bindir), "os_user": user}
    try:
        postgres.wait_ready(proc, settings.sockets, settings.pg_port, log)
        _ensure_roles(settings, settings.pg_port)
    except BaseException:
        postgres.stop(rec)
        raise
    return rec


def _ensure_roles(settings: TeamSettings, port: int) -> None:
    """Roles, databases and the pgpass file (rewritten for the port the cluster listens on)."""
    passwords = _passwords(settings)
    with postgres.admin(settings.sockets, port) as connection:
        for name, password in passwords.items():
            postgres.ensure_database(connection, DATABASES[name], password)
    _write_pgpass(TeamSettings(settings.dir, pg_port=port), passwords)


def _up_mlflow(settings: TeamSettings, pg_port: int, say: Callable[[str], None]) -> dict:
    _port_free(settings.mlflow_port, "--mlflow-port")
    uri = f"http://{HOST}:{settings.mlflow_port}"
    say(f"starting the MLflow tracking server on {uri}")
    log = settings.logs / "mlflow.log"
    proc = mlflow_server.start(database_url("mlflow", pg_port), settings.dir / "artifacts", HOST,
                               settings.mlflow_port, settings.workers, log, settings.pgpass)
    rec = {**processes.record(proc.pid), "port": settings.mlflow_port}
    try:
        mlflow_server.wait_ready(proc, uri, log)
    except BaseException:
        mlflow_server.stop(rec)
        raise
    return rec


def down(folder: Path) -> dict:
    """Stop the MLflow server, then PostgreSQL: only the processes `up` recorded, by PID and start time."""
    state = read_state(folder)
    if not state:
        raise ServiceError(f"--dir: no team services recorded in {folder} (no team.json); nothing to stop",
                           key="--dir")
    stopped = {"mlflow": mlflow_server.stop(state.get("mlflow")), "postgres": postgres.stop(state.get("postgres"))}
    for name in ("mlflow", "postgres"):
        if state.get(name):
            state[name] = {k: v for k, v in state[name].items() if k not in ("pid", "start_time")}
    _write_state(TeamSettings(folder), state)
    return {"dir": str(folder), "stopped": stopped}


def status(folder: Path) -> dict:
    state = read_state(folder)
    if not state:
        raise ServiceError(f"--dir: no team services recorded in {folder} (no team.json); run trainpipe team up",
                           key="--dir")
    doc = summary(TeamSettings(folder), state)
    doc["mlflow"]["answering"] = bool(state.get("tracking_uri")) and mlflow_server.healthy(state["tracking_uri"])
    return doc
