"""The one event type every alert carries, and constructors for the events trainpipe raises.

An event says what happened (`kind`), how bad it is (`severity`), to which run, in one line (`summary`), with
structured `details` for the webhook/e-mail body. `key` identifies "the same alert" for deduplication: the
throttle drops an event whose (kind, key) was sent within the dedup window. The constructors below choose keys
so that repeats of one problem collapse (the same health check of the same run) while distinct facts do not
(moving an alias to version 7, then back to 6, are two alerts; so are making version 6 the first champion and
rolling back to it later).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

EVENTS_FILE = "events.jsonl"  # in the run folder: every event of the run, one JSON line each, in order


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """Every whole event of a run folder's events.jsonl, oldest first: a line being appended right now, or cut
    short by a crash, is skipped (`runs watch` reads it again next time)."""
    try:
        text = (run_dir / EVENTS_FILE).read_text(encoding="utf-8")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            found.append(event)
    return found

Severity = Literal["info", "warning", "error"]
EventKind = Literal["run_failed", "run_finished", "gate_failed", "champion_changed", "health", "drift",
                    "budget_exceeded"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)


def severity_rank(severity: str) -> int:
    """info < warning < error, for `min_severity` filters."""
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Event:
    kind: EventKind
    severity: Severity
    summary: str  # one line, shown as the alert's title / subject
    run_id: str | None = None
    key: str = ""  # what makes two events "the same alert"; default: the run id
    details: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)  # seconds since the epoch

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; one of {', '.join(EVENT_KINDS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}; one of {', '.join(SEVERITIES)}")
        if "\n" in self.summary:  # a title that spans lines breaks subjects and chat previews
            object.__setattr__(self, "summary", " ".join(self.summary.split()))

    @property
    def identity(self) -> str:
        """The deduplication identity: kind and key (the run id when no key was given)."""
        return f"{self.kind}:{self.key or self.run_id or ''}"

    @property
    def iso_time(self) -> str:
        return datetime.fromtimestamp(self.time, UTC).isoformat(timespec="seconds")

    def to_json(self) -> dict[str, Any]:
        return {"source": "trainpipe", "kind": self.kind, "severity": self.severity, "run_id": self.run_id,
                "summary": self.summary, "key": self.identity, "time": self.iso_time, "details": self.details}


def run_failed(run_id: str, stage: str | None, error: str) -> Event:
    where = f" at stage {stage}" if stage else ""
    return Event("run_failed", "error", f"run {run_id} failed{where}: {error}", run_id,
                 details={"stage": stage, "error": error})


def run_finished(run_id: str, summary: str, details: dict[str, Any] | None = None) -> Event:
    return Event("run_finished", "info", f"run {run_id} finished: {summary}", run_id, details=dict(details or {}))


def gate_failed(run_id: str, reasons: list[str], details: dict[str, Any] | None = None) -> Event:
    first = reasons[0] if reasons else "see the run's gate decision"
    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return Event("gate_failed", "warning", f"run {run_id}: gate failed: {first}{more}", run_id,
                 details={"reasons": list(reasons), **(details or {})})


def champion_changed(model: str, alias: str, old_version: str | int | None, new_version: str | int,
                     by: str, run_id: str | None = None) -> Event:
    """by: what moved it (`register`, `models promote`, `models rollback`)."""
    before = f"version {old_version}" if old_version is not None else "no version"
    return Event("champion_changed", "info", f"{model}@{alias}: {before} -> version {new_version} ({by})", run_id,
                 key=f"{model}@{alias}:{old_version}->{new_version}",  # 6→7 and 7→6 are two facts; so is ∅→6
                 details={"model": model, "alias": alias, "old_version": old_version,
                          "new_version": new_version, "by": by})


def drift_detected(run_id: str, status: Literal["warn", "fail"], columns: list[str], line: str,
                   table: list[dict[str, Any]] | None = None) -> Event:
    return Event("drift", "error" if status == "fail" else "warning", f"run {run_id}: {line}", run_id,
                 key=f"{run_id}:{status}", details={"columns": list(columns), "table": list(table or [])})


def budget_exceeded(run_id: str, key: str, message: str, details: dict[str, Any] | None = None) -> Event:
    return Event("budget_exceeded", "warning", f"run {run_id}: {message}", run_id, key=f"{run_id}:{key}",
                 details={"budget_key": key, **(details or {})})
