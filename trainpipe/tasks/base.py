"""The Task protocol: the one seam between tasks.

Every stage is the same module for every task; what differs between a tabular task (binary, multiclass,
regression: one row per example, a label column) and ranking (interactions of users and items) is asked of
the run's Task, chosen once from `config.task`: how the rows are checked, split and turned into model inputs,
how a model is fitted on them, scored (evaluate, the champion comparison, confidence intervals) and packaged.
A task computes and writes its own files into the stage folder; the stage writes what every task writes, and
turns the pieces into its StageResult.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig
    from trainpipe.models.base import FitContext, FitResult


class RunView(Protocol):
    """What a task may read and write during a stage (trainpipe/stages/context.py StageContext has all of it)."""

    run_id: str
    stage_dir: Path
    config: PipelineConfig

    def upstream(self, stage: str) -> Path: ...

    def manifest(self, stage: str) -> dict: ...

    def read_json(self, stage: str, name: str) -> Any: ...

    def table(self) -> pd.DataFrame: ...

    def arrays(self, stage: str, names: list[str]) -> dict[str, np.ndarray]: ...

    def save_array(self, name: str, array: np.ndarray) -> None: ...

    def raw_rows(self, split: str, positions: np.ndarray | None = None) -> pd.DataFrame: ...


@dataclass
class TaskOutput:
    """A task's share of a stage's result: merged with what the stage itself records."""

    outputs: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Validation:
    """validate: the report (errors fail the run), its warnings as text, and what the task saved."""

    report: dict
    warnings: list[str]
    output: TaskOutput
    schema_columns: list[str] = field(default_factory=list)  # names an error's key as schema.columns.<name>


@dataclass
class SplitParts:
    """split: row positions per part, and what split.json records about them (the stage fills in "hash")."""

    parts: dict[str, np.ndarray]
    record: dict
    summary: dict


@dataclass
class FitPlan:
    """How train fits: the tune stage's hand-over (trainpipe/stages/train.py), or `model` as configured."""

    early_stopping_rounds: int | None
    with_validation: bool  # retrain on train + validation (no rows left to stop on)
    train_metrics: bool


@dataclass
class Fitted:
    result: FitResult
    seconds: float  # the fit itself, not the loading of its inputs: train_seconds
    metrics: dict[str, float] = field(default_factory=dict)  # beyond train_seconds / iterations / best_iteration
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Evaluation:
    """evaluate: metrics.json's document, the flat metrics logged to MLflow and the stage's summary."""

    document: dict
    output: TaskOutput


@dataclass(frozen=True)
class ChampionLineage:
    """Where the champion came from: its registered version's lineage tags (stages/register.py) and its run
    folder when this store still holds it. With them a task can tell which of this run's test rows the champion
    trained or validated on (tasks/unseen.py): scored on those, it would look better than it is."""

    version: str
    run_id: str | None = None
    split_hash: str | None = None  # trainpipe.split_hash: the champion's split stage identity
    data_fingerprint: str | None = None  # trainpipe.data_fingerprint: its ingest identity
    run_dir: Path | None = None  # <store>/runs/<its run id>, None when gone (or in another store)


@dataclass
class ChampionScores:
    """The same rows (tabular) or users (ranking) scored by this run's model and by the champion, and which test
    rows they are (`rows`: counts, the basis, a warning when the champion may have trained on some of them)."""

    y: np.ndarray
    challenger: np.ndarray
    champion: np.ndarray
    rows: dict = field(default_factory=dict)


@dataclass
class Package:
    """register: the packaged model's checksum, what its model card shows and lineage tags of its own."""

    sha: str
    card_metrics: dict
    cis: dict
    interval_seconds: float


@dataclass
class DriftTable:
    """What drift is measured on (trainpipe/data/drift.py): a table of raw columns, which one is the label and
    how it is compared (categorical for classification), and numeric columns that are really codes."""

    frame: pd.DataFrame
    label: str | None
    label_kind: str | None  # "categorical" | "numeric"
    categorical: list[str] = field(default_factory=list)


class Task(Protocol):
    name: ClassVar[str]  # "tabular" or "ranking"
    config: PipelineConfig

    def primary_metric(self) -> tuple[str, str]:
        """(name, "max" | "min") of the headline metric: evaluate's summary, the gate's champion default."""
        ...

    def check_columns(self, frame: pd.DataFrame) -> None:
        """ingest: every column the config names is in the table (DataError naming the key)."""
        ...

    def check_data(self, frame: pd.DataFrame) -> dict:
        """`trainpipe validate`: the report validate would write, without a run folder."""
        ...

    def validate(self, run: RunView) -> Validation: ...

    def split(self, run: RunView) -> SplitParts: ...

    def features(self, run: RunView) -> TaskOutput:
        """Write the model's inputs (and features.json) into run.stage_dir."""
        ...

    def n_classes(self, run: RunView) -> int: ...

    def fit(self, run: RunView, model: Any, plan: FitPlan, context: FitContext) -> Fitted: ...

    def evaluate(self, run: RunView) -> Evaluation:
        """Score the trained model on validation and test; may write files of its own (test scores)."""
        ...

    def test_size(self, run: RunView) -> tuple[int, str]:
        """How many test rows (or users) the gate's min_test_rows counts, and what they are called."""
        ...

    def slice_checks(self, run: RunView, decision: dict) -> list[dict]:
        """The gate's per-slice checks (gates.slices); fills decision["slices"]."""
        ...

    def baseline_checks(self, metrics: dict[str, float]) -> list[dict]:
        """The gate's checks against the task's own baselines (gates.beat_baselines); evaluate's flat metrics in."""
        ...

    def champion_scores(self, run: RunView, package: Path, metric: str,
                        lineage: ChampionLineage) -> tuple[ChampionScores | None, str | None]:
        """This run's test scores next to the champion's on the same rows, or (None, why it cannot compare).
        When this run's split differs from the champion's, only test rows the champion neither trained nor
        validated on (when they can be told; else all, with a warning in `rows`)."""
        ...

    def package(self, run: RunView, target: Path) -> Package:
        """Write the packaged model (an MLflow pyfunc folder) at `target`."""
        ...

    def drift_table(self, run: RunView, split: str | None) -> DriftTable | None:
        """The rows drift compares, `drift.max_rows` of them sampled by `data/drift.py sample_positions` (split None:
        from the whole ingested table; "train": from what the model was trained on, summarised at register); None
        when this task does not measure drift, with `drift_skipped` saying why."""
        ...

    drift_skipped: ClassVar[str | None]
