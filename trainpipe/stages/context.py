"""What every stage shares: its spec, the context it runs in and the result it returns.

A stage is a module with `SPEC = StageSpec(...)` and `run(ctx: StageContext) -> StageResult`; the pipeline
(trainpipe/pipeline/stages.py) assembles the stage table from the modules' SPECs. The context is all a stage
may touch: its own output folder, the folders of the stages before it, the config, the run's task and an
in-process memo (the table ingest loaded).
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np
import pandas as pd

from trainpipe.errors import DataError
from trainpipe.monitoring.events import EVENTS_FILE
from trainpipe.stages.array_writes import ArrayWrites

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig
    from trainpipe.monitoring.cost import BudgetChecker
    from trainpipe.monitoring.events import Event
    from trainpipe.store import Store
    from trainpipe.tasks.base import Task


def number(value: Any) -> str:
    """How a value reads in a stage line or a metrics table: 4 decimals, thousands separators when large."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:,.1f}"
    return str(value)


def no_files(config: PipelineConfig) -> list[str]:
    return []


def no_code(config: PipelineConfig) -> dict[str, str]:
    return {}


def nothing_else(config: PipelineConfig) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class StageSpec:
    """A stage's place in the pipeline. Its cache key covers the upstream stages' identities, the values of
    `sections`, the contents of `files`, the user code in `code` and whatever `inputs` adds."""

    name: str
    sections: tuple[str, ...]  # config keys whose values can change this stage's output
    upstream: tuple[str, ...]
    line: Callable[[dict], str]  # the CLI's one-line summary, from the manifest's `summary`
    reusable: bool = True  # False: depends on state outside the run folder (the registry), never reused
    enabled_by: str | None = None  # an optional stage runs only when this config key is true
    files: Callable[[PipelineConfig], list[str]] = no_files  # files the config names: editing one invalidates
    code: Callable[[PipelineConfig], dict[str, str]] = no_code  # source hashes of user modules the stage imports
    inputs: Callable[[PipelineConfig], dict[str, Any]] = nothing_else  # e.g. ingest: size and mtime of the sources
    # Failures of an earlier stage after which this stage still runs (the report after a failed gate); the run
    # then ends with that failure all the same (the gate's exit code 3).
    runs_after_failure: tuple[type[BaseException], ...] = ()
    # The run's MLflow worker starts with this stage (pipeline/tracking.py RunTracking.release): MLflow's import
    # then overlaps model fitting, which releases the GIL, instead of the data stages, which need it.
    starts_tracking: bool = False

    def active(self, config: PipelineConfig) -> bool:
        return self.enabled_by is None or bool(operator.attrgetter(self.enabled_by)(config))

    def summary_line(self, summary: dict) -> str:
        """A stage may word its own line (`summary["line"]`, e.g. a ranking task's counts); else the spec's."""
        return str(summary["line"]) if "line" in summary else self.line(summary)


@dataclass
class StageResult:
    """What a stage hands back; the pipeline writes it into the stage's manifest.json."""

    outputs: dict[str, Any] = field(default_factory=dict)  # name -> file in the stage folder (or a small record)
    metrics: dict[str, float] = field(default_factory=dict)  # logged to MLflow
    artifacts: list[str] = field(default_factory=list)  # files logged to MLflow under <stage>/
    summary: dict[str, Any] = field(default_factory=dict)  # shown by the CLI and in --json
    history: str | None = None  # a JSON file of per-iteration values (MLflow steps)
    identity: str | None = None  # what downstream cache keys depend on; None: the stage's cache key


class RunTrackingView(Protocol):
    """What stages use of the run's MLflow worker (trainpipe/pipeline/tracking.py RunTracking)."""

    mlflow_run_id: str | None

    def close(self) -> None: ...

    def live(self, epoch: int, values: dict[str, float]) -> None: ...

    def event(self, event: Event) -> None: ...

    def sample_system(self, interval_s: float, on_sample: Callable[[Mapping[str, float]], Any]) -> Callable[[], None]: ...


def read_manifest(stage_dir: Path) -> dict | None:
    try:
        return json.loads((stage_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None




def record_event(run_dir: Path, event: Event) -> None:
    """Append one event to <run>/events.jsonl; one short line per write, so concurrent appends stay whole
    (the sampler thread's resource warnings, the stage's own events)."""
    with (run_dir / EVENTS_FILE).open("a", encoding="utf-8") as out:
        out.write(json.dumps(event.to_json(), default=str) + "\n")


@dataclass
class StageContext:
    """What a stage may touch: its own output folder, upstream folders, the config, shared memory."""

    run_id: str
    run_dir: Path
    stage_dir: Path
    config: PipelineConfig
    store: Store
    task: Task  # chosen once per run from config.task (trainpipe/tasks): everything that differs between tasks
    memo: dict = field(default_factory=dict)  # in-process objects shared between stages (the loaded table)
    cache_key: str = ""  # this stage's: checkpoints written under another key are refused
    resume_anyway: bool = False  # --resume-anyway: load such checkpoints all the same
    tracking: RunTrackingView | None = None  # the run's MLflow worker: register waits on it for the MLflow run id
    progress: bool = False  # live progress on stderr (the CLI without --json): rounds, trials, epochs
    on_event: Callable[[Event], None] | None = None  # the run's alert delivery (pipeline/run.py), when configured
    budget: BudgetChecker | None = None  # the run's `budget` (pipeline/run.py): training polls it
    failure: BaseException | None = None  # an earlier stage's failure this stage runs after (spec.runs_after_failure)
    name: str = ""  # the stage's name (its folder is a temporary one until it commits)
    writes: ArrayWrites | None = None  # the run's background .npy writer (stages/array_writes.py); None: np.save

    def emit(self, event: Event) -> None:
        """A health, drift, budget, gate or champion event: one JSON line in <run>/events.jsonl (the report and
        `runs watch` read it back), to MLflow (a tag and a metric per kind), then to the run's alert channels."""
        record_event(self.run_dir, event)
        if self.tracking is not None:
            self.tracking.event(event)
        if self.on_event is not None:
            self.on_event(event)

    def upstream(self, stage: str) -> Path:
        """An upstream stage's folder, its background writes finished (a reader by path sees whole files)."""
        if self.writes is not None:
            self.writes.wait(stage)
        return self.run_dir / stage

    def checkpoint_dir(self, stage: str) -> Path:
        """Outside the stage's temp folder, which a crash discards: a resumed stage continues from here."""
        return self.run_dir / "checkpoints" / stage

    def manifest(self, stage: str) -> dict:
        return read_manifest(self.run_dir / stage) or {}

    def read_json(self, stage: str, name: str) -> Any:
        """A JSON file an upstream stage wrote (features.json, metrics.json, decision.json...)."""
        return json.loads((self.run_dir / stage / name).read_text())  # JSON is never written in the background

    def table(self) -> pd.DataFrame:
        """The ingested table, read once per process and checked against the ingest manifest."""
        from trainpipe.data.io import file_stats, fingerprint, read_table

        ingest = self.manifest("ingest")
        cached = self.memo.get("frame")
        if cached is not None and self.memo.get("fingerprint") == ingest.get("identity"):
            return cached
        frame, files = read_table(self.config.data)
        recorded = ingest["outputs"].get("files_stats", [])
        now = file_stats(files)
        if all("size" in s for s in now) and recorded:
            if now != recorded:
                raise DataError(f"data.path: the data changed since it was ingested in run {self.run_id}; start a "
                                "new run", key="data.path")
        elif fingerprint(frame) != ingest["identity"]:
            raise DataError(f"data.path: the data changed since it was ingested in run {self.run_id}; start a new run",
                            key="data.path")
        self.memo.update(frame=frame, fingerprint=ingest["identity"])
        return frame

    def arrays(self, stage: str, names: list[str]) -> dict[str, np.ndarray]:
        """`<name>.npy` matrices an upstream stage wrote (features: X_train, y_test...)."""
        held = {name: self.memo[("array", stage, name)] for name in names if ("array", stage, name) in self.memo}
        if len(held) == len(names):  # saved by this process: the arrays themselves, while their files are written
            return held
        folder = self.upstream(stage)
        return {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in names}

    def save_array(self, name: str, array: np.ndarray) -> None:
        """`<name>.npy` in this stage's folder: written in the background when the run has a writer, the array
        kept (read-only) for the later stages of this process meanwhile."""
        if self.writes is None:
            np.save(self.stage_dir / f"{name}.npy", array, allow_pickle=False)
            return
        self.writes.save(self.name, self.stage_dir, f"{name}.npy", array)
        held = array.view()
        held.flags.writeable = False  # the writer thread is still reading it
        self.memo[("array", self.name, name)] = held

    def raw_rows(self, split: str, positions: np.ndarray | None = None) -> pd.DataFrame:
        """The ingested rows of one split, as they were before preprocessing (what a packaged model takes); only
        those at `positions` (among the split's rows) when given: a sample taken without copying the whole split
        first (register's drift reference: 0.2-0.3 s less at 1M rows)."""
        frame = self.table()
        with np.load(self.upstream("split") / "split.npz") as parts:
            rows = parts[split]
        return frame.iloc[rows if positions is None else rows[positions]]
