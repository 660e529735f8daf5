"""The stage table: order, what each stage's cache key covers, what it reads, whether it is optional."""

from __future__ import annotations

import operator
from dataclasses import dataclass

from trainpipe.config import PipelineConfig


@dataclass(frozen=True)
class StageSpec:
    name: str
    sections: tuple[str, ...]  # config keys whose values can change this stage's output
    upstream: tuple[str, ...]
    reusable: bool = True  # False: depends on state outside the run folder (the registry), never reused
    enabled_by: str | None = None  # an optional stage runs only when this config key is true

    def active(self, config: PipelineConfig) -> bool:
        return self.enabled_by is None or bool(operator.attrgetter(self.enabled_by)(config))


STAGES: tuple[StageSpec, ...] = (
    StageSpec("ingest", ("data",), ()),
    StageSpec("validate", ("data", "schema", "task", "ranking"), ("ingest",)),
    StageSpec("split", ("split", "seed", "task", "data.target", "ranking"), ("ingest", "validate")),
    StageSpec("features", ("features", "data", "task", "model.type", "ranking"), ("ingest", "split")),
    StageSpec("tune", ("tuning", "model", "training", "seed", "task", "evaluation"), ("features",),
              enabled_by="tuning.enabled"),
    StageSpec("train", ("model", "training", "seed", "task", "ranking"), ("features", "tune")),
    StageSpec("evaluate", ("evaluation", "task", "ranking"), ("features", "train")),
    StageSpec("gate", ("gates", "evaluation", "registry", "task", "ranking"), ("ingest", "split", "features", "evaluate"),
              reusable=False),
    StageSpec("register", ("registry", "evaluation", "task", "ranking"), ("ingest", "split", "features", "train", "evaluate", "gate"),
              reusable=False),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
SPECS = {s.name: s for s in STAGES}


def active_stages(config: PipelineConfig) -> tuple[str, ...]:
    """The stages this config runs, in order (optional ones only when switched on)."""
    return tuple(s.name for s in STAGES if s.active(config))
