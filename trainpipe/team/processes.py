"""Detached service processes, recorded by PID *and* kernel start time, so `team down` never signals a
process that merely reuses a recorded PID (Linux /proc; the team services are Debian's PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def start_time(pid: int) -> int | None:
    """Clock ticks since boot when `pid` started (field 22 of /proc/PID/stat); None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return None if fields[0] in ("Z", "X") else int(fields[19])


def record(pid: int) -> dict:
    return {"pid": pid, "start_time": start_time(pid)}


def alive(rec: dict | None) -> bool:
    """The recorded process still runs (same PID, same start time)."""
    if not rec or not rec.get("pid") or rec.get("start_time") is None:
        return False
    return start_time(rec["pid"]) == rec["start_time"]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # members that already exited but were not reaped still count for killpg: ignore zombies
    return any(start_time(int(p.name)) is not None and _pgid(int(p.name)) == pgid
               for p in Path("/proc").iterdir() if p.name.isdigit())


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (a session fixture), else init does."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def spawn(args: list[str], log: Path, env: dict | None = None, user: str | None = None) -> subprocess.Popen:
    """Start a service in its own session (it outlives the CLI; its process group is ours to stop)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        kwargs: dict = {}
        if user is not None:  # PostgreSQL refuses to run as root; no supplementary groups carried over
            kwargs = {"user": user, "group": _group_of(user), "extra_groups": []}
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, close_fds=True, **kwargs)


def _group_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def stop(rec: dict | None, first: signal.Signals, then: signal.Signals = signal.SIGKILL, wait: float = 30.0,
         group: bool = False) -> bool:
    """Signal the recorded process (or its process group) and wait for it to go; escalate after `wait` s.
    Returns False when it was not running (nothing signalled)."""
    if rec is None or not alive(rec):
        return False
    pid = rec["pid"]
    send = (lambda sig: os.killpg(pid, sig)) if group else (lambda sig: os.kill(pid, sig))
    running = (lambda: alive(rec) or _group_alive(pid)) if group else (lambda: alive(rec))
    for sig, limit in ((first, wait), (then, 10.0)):
        try:
            send(sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            _reap(pid)
            if not running():
                return True
            time.sleep(0.05)
    _reap(pid)
    return True
