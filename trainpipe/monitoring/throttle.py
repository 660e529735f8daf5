"""Deduplication and a rate limit for alerts, shared by every process that uses one store.

A training run, its tuning workers and a `models promote` in another terminal may all raise alerts; they must
not each send the same one. The decision "send or not" is made under a file lock on a small JSON state file in
the store, and the file is replaced atomically (trainpipe/files.py), so a crash never leaves it half-written.
Only the decision is locked: delivery happens after the lock is released.

State: when each alert identity (kind + key) was last sent, the send times of the last hour (the rate limit)
and how many alerts the rate limit held back since the last one that went out (reported with the next one).
Hand-written because it is ~60 lines on top of filelock; no library does cross-process alert throttling.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainpipe import files

log = logging.getLogger(__name__)

STATE_FILE_NAME = "alerts-state.json"
RATE_WINDOW_S = 3600.0


@dataclass(frozen=True)
class Admission:
    send: bool
    reason: str | None = None  # why not, in words
    suppressed: int = 0  # alerts the rate limit held back since the last one sent (when send is True)


def _empty() -> dict[str, Any]:
    return {"version": 1, "sent": {}, "recent": [], "suppressed": 0}


class Throttle:
    """`admit(identity)` says whether an alert goes out now; see the module docstring.

    state_file: None keeps the state in this object only (no store: one process, one run).
    urgent alerts (severity error) skip the rate limit but are still deduplicated.
    """

    def __init__(self, state_file: Path | None, dedup_s: float, max_per_hour: int | None,
                 clock: Callable[[], float] = time.time, lock_timeout_s: float = 5.0):
        self.state_file = Path(state_file) if state_file is not None else None
        self.dedup_s, self.max_per_hour, self.clock = dedup_s, max_per_hour, clock
        self.lock_timeout_s = lock_timeout_s
        self._memory = _empty()  # used without a state file, or after the file could not be used
        self._file_failed = False

    def admit(self, identity: str, urgent: bool = False) -> Admission:
        now = self.clock()
        with self._state() as state:
            state["sent"] = {k: t for k, t in state["sent"].items() if now - t < self.dedup_s}
            state["recent"] = [t for t in state["recent"] if now - t < RATE_WINDOW_S]
            last = state["sent"].get(identity)
            if last is not None:
                return Admission(False, f"the same alert went out {_ago(now - last)} ago (alerts.dedup_minutes)")
            if not urgent and self.max_per_hour is not None and len(state["recent"]) >= self.max_per_hour:
                state["suppressed"] += 1
                return Admission(False, f"{len(state['recent'])} alerts in the last hour (alerts.max_per_hour)")
            suppressed, state["suppressed"] = int(state["suppressed"]), 0
            state["sent"][identity] = now
            state["recent"].append(now)
            return Admission(True, None, suppressed)

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The state to decide on, saved afterwards; in memory when the file cannot be locked or written."""
        if self.state_file is None or self._file_failed:
            yield self._memory
            return
        from filelock import FileLock, Timeout

        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.state_file) + ".lock", timeout=self.lock_timeout_s)
            lock.acquire()
        except (OSError, Timeout) as exc:
            self._fall_back(exc)
            yield self._memory
            return
        try:
            state = self._read()
            yield state
            try:
                files.write_text(self.state_file, json.dumps(state, separators=(",", ":")))
            except OSError as exc:
                self._fall_back(exc)
        finally:
            lock.release()

    def _read(self) -> dict[str, Any]:
        if self.state_file is None:  # only called when the throttle keeps its state in a file
            return _empty()
        try:
            doc = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return _empty()
        except (OSError, ValueError):  # unreadable or hand-edited: start afresh rather than stop alerting
            return _empty()
        if not isinstance(doc, dict) or doc.get("version") != 1:
            return _empty()
        return {**_empty(), **doc}

    def _fall_back(self, exc: BaseException) -> None:
        if not self._file_failed:
            log.warning("alerts: cannot use %s (%s); this process deduplicates its own alerts only",
                        self.state_file, exc)
        self._file_failed = True


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
