"""Is a run's process alive? The owner record and heartbeat a working process keeps in run.json.

A process killed by SIGKILL (or a machine that lost power) runs no cleanup: its run.json says `running`
and its MLflow run RUNNING for good. So the process working on a run records who it is (pid, host, the
kernel's boot id, the process's start time) in run.json's `owner`, and a background thread refreshes
`owner.heartbeat_at` (and the MLflow tag `trainpipe.heartbeat`) every few seconds. Whoever reads the run
later judges it (`judge`): on the same machine exactly (is that pid, with that start time, still there?),
on another machine by the age of the heartbeat. A process that ends normally removes its owner record, so a
`running` run without one is between two orchestrated stages (`trainpipe stage`), not dead.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Seconds between two heartbeats, and the age after which a heartbeat from another machine counts as dead.
# Several missed beats: a machine busy enough to delay one (the thread needs the GIL) is not judged dead.
HEARTBEAT_SECONDS = 10.0
STALE_AFTER_SECONDS = 90.0
HEARTBEAT_TAG, OWNER_TAG = "trainpipe.heartbeat", "trainpipe.owner"


def boot_id() -> str | None:
    """The kernel's id of this boot (Linux): a pid recorded before a reboot names nobody after it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def process_started(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), None when there is no such process."""
    import psutil

    try:
        return round(psutil.Process(pid).create_time(), 2)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


def owner_record(stage: str | None = None) -> dict:
    """Who is working on the run: this process."""
    now = time.time()
    return {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": boot_id(),
            "process_started": process_started(os.getpid()), "since": round(now, 3), "heartbeat_at": round(now, 3),
            "stage": stage}


@dataclass(frozen=True)
class Liveness:
    """What a reader concludes about a run: `alive`, `dead`, `idle` (running, no process: between orchestrated
    stages, or a run from before heartbeats) or `ended` (completed, failed, killed); `reason` says why."""

    state: str
    reason: str

    @property
    def dead(self) -> bool:
        return self.state == "dead"


def _age(owner: dict, now: float) -> float:
    return max(0.0, now - float(owner.get("heartbeat_at") or owner.get("since") or 0.0))


def describe(owner: dict, now: float | None = None) -> str:
    """`process 1234 on host-a (last heartbeat 3 s ago)`."""
    age = _age(owner, time.time() if now is None else now)
    return f"process {owner.get('pid')} on {owner.get('host')} (last heartbeat {age:.0f} s ago)"


def judge(meta: dict, *, now: float | None = None, stale_after: float = STALE_AFTER_SECONDS) -> Liveness:
    """The liveness of a run from its run.json: a pure function of `meta`, this machine and the clock."""
    if meta.get("status") != "running":
        return Liveness("ended", f"status {meta.get('status')}")
    owner = meta.get("owner")
    if not owner:
        return Liveness("idle", "no process is working on it (between stages, or recorded before heartbeats)")
    now = time.time() if now is None else now
    who = describe(owner, now)
    if owner.get("host") == socket.gethostname():
        here = boot_id()
        if owner.get("boot_id") and here and owner["boot_id"] != here:
            return Liveness("dead", f"{who}: the machine has restarted since")
        started = process_started(int(owner.get("pid") or 0)) if owner.get("pid") else None
        recorded = owner.get("process_started")
        if started is None or (recorded is not None and abs(started - float(recorded)) > 1.0):
            return Liveness("dead", f"{who}: that process has ended")
        return Liveness("alive", who)
    if _age(owner, now) > stale_after:
        return Liveness("dead", f"{who}: no heartbeat for over {stale_after:.0f} s")
    return Liveness("alive", who)


def judge_tags(tags: dict[str, str], *, now: float | None = None, stale_after: float = STALE_AFTER_SECONDS) -> Liveness:
    """The liveness of a RUNNING MLflow run from its tags alone (a run whose folder is on another machine)."""
    try:
        owner = json.loads(tags.get(OWNER_TAG) or "null")
    except ValueError:
        owner = None
    if not isinstance(owner, dict):
        return Liveness("idle", "no owner recorded")
    beat = tags.get(HEARTBEAT_TAG)
    if beat:
        try:
            owner["heartbeat_at"] = float(beat)
        except ValueError:
            pass
    return judge({"status": "running", "owner": owner}, now=now, stale_after=stale_after)


class Heartbeat:
    """A daemon thread calling `beat()` every `interval` seconds until stopped. `beat` must not raise for
    long: a failing beat is retried at the next interval (a full disk must not kill the run from here)."""

    def __init__(self, beat: Callable[[], None], interval: float = HEARTBEAT_SECONDS):
        self._beat, self.interval = beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="trainpipe-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 - the next beat tries again; the run's own writes report errors
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


def interval_from_env() -> float:
    """TRAINPIPE_HEARTBEAT_SECONDS overrides the interval (tests use a short one); a bad value is ignored."""
    try:
        value = float(os.environ.get("TRAINPIPE_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS))
    except ValueError:
        return HEARTBEAT_SECONDS
    return value if value > 0 else HEARTBEAT_SECONDS


class RunOwnership:
    """This process's claim on one run folder: run.json's `owner`, written under one lock by the main thread
    (`save`) and by the heartbeat thread (`beat`, which rewrites only the heartbeat time of what is on disk, so it
    never reads the main thread's dict while that changes)."""

    def __init__(self, path: Path, on_beat: Callable[[float], None] | None = None):
        self.path, self._on_beat = path, on_beat
        self._lock = threading.Lock()
        self._heartbeat: Heartbeat | None = None

    def claim(self, meta: dict) -> None:
        meta["owner"] = owner_record()
        self._heartbeat = Heartbeat(self.beat, interval_from_env()).start()

    def save(self, meta: dict) -> None:
        from trainpipe.pipeline.run_folder import write_json

        with self._lock:
            if meta.get("owner") and meta["owner"].get("pid") == os.getpid():
                meta["owner"]["heartbeat_at"] = round(time.time(), 3)
            write_json(self.path, meta)

    def beat(self) -> None:
        from trainpipe.pipeline.run_folder import write_json

        now = round(time.time(), 3)
        with self._lock:
            doc = json.loads(self.path.read_text())
            owner = doc.get("owner")
            if not owner or owner.get("pid") != os.getpid():
                return  # released meanwhile
            owner["heartbeat_at"] = now
            write_json(self.path, doc)
        if self._on_beat is not None:
            self._on_beat(now)

    def release(self, meta: dict) -> None:
        """Stop beating and drop the claim: a `running` run without an owner waits for its next stage."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if meta.pop("owner", None) is not None and self.path.parent.is_dir():
            self.save(meta)
