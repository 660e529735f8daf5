"""The stage table, assembled from the stage modules: order, specs (trainpipe/stages/<name>.py SPEC) and runners."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from trainpipe.stages import (drift, evaluate, features, gate, ingest, register, report, split, train, tune,
                              validate)
from trainpipe.stages.context import StageContext, StageResult, StageSpec

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig

MODULES = (ingest, validate, split, features, tune, train, evaluate, drift, gate, register, report)
STAGES: tuple[StageSpec, ...] = tuple(module.SPEC for module in MODULES)
STAGE_NAMES = tuple(s.name for s in STAGES)
SPECS = {s.name: s for s in STAGES}
RUNNERS: dict[str, Callable[[StageContext], StageResult]] = {module.SPEC.name: module.run for module in MODULES}


def active_stages(config: PipelineConfig) -> tuple[str, ...]:
    """The stages this config runs, in order (optional ones only when switched on)."""
    return tuple(s.name for s in STAGES if s.active(config))
