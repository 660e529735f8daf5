"""One PostgreSQL cluster for the team: installed from Debian's packages when missing, initialised under the
team folder, listening on 127.0.0.1 only, run as a non-root OS user, administered over its private Unix socket.

Authentication: TCP connections need a password (scram-sha-256), one role per database; the only way in as
the superuser is the Unix socket in `<team dir>/run` with peer authentication (the OS user that started it).
Passwords reach the server as SCRAM verifiers, never in plain text, and clients read them from a .pgpass file.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from trainpipe.errors import ServiceError
from trainpipe.team import processes
from trainpipe.team.apt import apt_install

SUPERUSER = "postgres"
SOCKET_NAME_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


def os_user() -> str | None:
    """PostgreSQL refuses to run as root: as root it runs as the `postgres` user the Debian package creates."""
    return SUPERUSER if os.geteuid() == 0 else None


def find_bindir() -> Path | None:
    """The folder holding `postgres` and `initdb`: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _online_clusters() -> set[str]:
    """Debian clusters (`pg_lsclusters`) that are running, as 'version/name'."""
    if not shutil.which("pg_lsclusters"):
        return set()
    out = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout
    return {f"{f[0]}/{f[1]}" for f in (line.split() for line in out.splitlines()) if len(f) > 3 and f[3] == "online"}


def install(say: Callable[[str], None]) -> Path:
    """`apt-get install postgresql`, without the package's own `main` cluster on port 5432.

    The package's postinst creates `main` unless `create_main_cluster` is false in createcluster.conf, which
    includes /etc/postgresql-common/createcluster.d/ (postgresql-common's place for such settings): a snippet
    there says so before the install. As a safety net, any cluster the install brought online is stopped
    again, so nothing of the package keeps running.
    """
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceError("PostgreSQL is not installed: install it (Debian: apt-get install postgresql, as root) "
                           "or put its bin folder on PATH", key="postgres")
    snippet = Path("/etc/postgresql-common/createcluster.d/trainpipe-no-main-cluster.conf")
    if not snippet.exists():
        snippet.parent.mkdir(parents=True, exist_ok=True)
        snippet.write_text("# trainpipe team up: the package creates no default cluster on 5432\n"
                           "create_main_cluster = false\n")
    before = _online_clusters()
    say("installing PostgreSQL (apt-get install postgresql)")
    result = apt_install(["postgresql"], ("--no-install-recommends", "-o", "Dpkg::Options::=--force-confold"))
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise ServiceError(f"apt-get install postgresql failed: {last}", key="postgres")
    for cluster in sorted(_online_clusters() - before):
        version, name = cluster.split("/")
        subprocess.run(["pg_ctlcluster", version, name, "stop"], capture_output=True)
    bindir = find_bindir()
    if bindir is None:
        raise ServiceError("apt-get installed postgresql but no postgres binary was found under /usr/lib/postgresql",
                           key="postgres")
    return bindir


def binaries(install_missing: bool, say: Callable[[str], None]) -> Path:
    found = find_bindir()
    if found is not None:
        return found
    if not install_missing:
        raise ServiceError("PostgreSQL is not installed (no postgres on PATH or under /usr/lib/postgresql); "
                           "drop --no-install or install it", key="postgres")
    return install(say)


def _as_user(user: str | None) -> dict:
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def check_reachable(folder: Path, user: str | None) -> None:
    """The server's OS user must be able to enter every parent of its data folder (pytest's and /root are 0700)."""
    if user is None:
        return
    probe = subprocess.run(["test", "-w", str(folder)], **_as_user(user))
    if probe.returncode != 0:
        raise ServiceError(f"--dir: the OS user {user!r} that runs PostgreSQL cannot write {folder} (a parent folder "
                           "is private to its owner); choose a --dir such as /srv/trainpipe-team", key="--dir")


def socket_dir_ok(sockets: Path, port: int) -> None:
    path = sockets / f".s.PGSQL.{port}"
    if len(str(path).encode()) > SOCKET_NAME_MAX:
        raise ServiceError(f"--dir: {sockets} is too deep for a Unix socket ({len(str(path))} > {SOCKET_NAME_MAX} "
                           "characters); choose a shorter --dir", key="--dir")


def prepare_dirs(data: Path, sockets: Path, user: str | None) -> None:
    for folder in (data, sockets):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        _chown(folder, user)
    check_reachable(data, user)


def initialised(data: Path) -> bool:
    return (data / "PG_VERSION").exists()


def init_cluster(bindir: Path, data: Path, user: str | None) -> None:
    """initdb, then pg_hba/pg_ident that allow the superuser only over the socket (peer) and every other
    role only over TCP from 127.0.0.1 with a password."""
    result = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-E", "UTF8", "--no-locale",
                             "--auth-local=peer", "--auth-host=scram-sha-256"], capture_output=True, text=True,
                            cwd=str(data), env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"}, **_as_user(user))
    if result.returncode != 0:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1]
        raise ServiceError(f"initdb {data} failed: {last}", key="postgres")
    me = pwd.getpwuid(os.geteuid()).pw_name
    (data / "pg_ident.conf").write_text(f"# MAPNAME  SYSTEM-USERNAME  PG-USERNAME\ntrainpipe  {me}  {SUPERUSER}\n"
                                        f"trainpipe  {user or me}  {SUPERUSER}\n")
    (data / "pg_hba.conf").write_text(
        "# written by trainpipe team up\n"
        "# TYPE  DATABASE  USER      ADDRESS        METHOD\n"
        f"local   all       {SUPERUSER}  peer map=trainpipe\n"
        "host    sameuser  all       127.0.0.1/32   scram-sha-256\n")
    for name in ("pg_ident.conf", "pg_hba.conf"):
        _chown(data / name, user)


def start(bindir: Path, data: Path, sockets: Path, port: int, log: Path, user: str | None) -> subprocess.Popen:
    args = [str(bindir / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
            "-c", f"unix_socket_directories={sockets}", "-c", "password_encryption=scram-sha-256"]
    return processes.spawn(args, log, env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"}, user=user)


def admin(sockets: Path, port: int) -> Any:
    import psycopg

    return psycopg.connect(host=str(sockets), port=port, user=SUPERUSER, dbname="postgres", autocommit=True,
                           connect_timeout=5)


def wait_ready(proc: subprocess.Popen, sockets: Path, port: int, log: Path, timeout: float = 60.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServiceError(f"PostgreSQL exited at start (code {proc.returncode}): {_last_line(log)}",
                               key="postgres")
        try:
            admin(sockets, port).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise ServiceError(f"PostgreSQL did not accept connections within {timeout:.0f}s: {_last_line(log)}",
                                   key="postgres") from None
            time.sleep(0.1)


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802/7677, PostgreSQL's format).

    Sending the verifier instead of the password means the plain text never reaches the server, its logs or
    pg_stat_activity. libpq computes this too (PQencryptPasswordConn) but psycopg 3 exposes it only on an open
    connection's pgconn, in bytes; the formula is short and fixed, so it is written here.
    """
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def ensure_database(connection: Any, name: str, password: str) -> None:
    """A login role and a database of the same name that it owns; only that role may connect to it."""
    from psycopg import sql

    role = sql.Identifier(name)
    exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
    verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
    # a verifier is not a secret the way a password is, and DDL takes no bind parameters
    connection.execute(sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(verb, role, sql.Literal(scram_verifier(password))))
    if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(role, role))
    connection.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(role))


def stop(rec: dict | None) -> bool:
    """Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit), immediate after 30 s."""
    import signal

    return processes.stop(rec, signal.SIGINT, then=signal.SIGQUIT, wait=30.0)
