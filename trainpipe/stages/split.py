"""split: row positions for train/validation/test, saved with the strategy, seed and sizes.

Which rows are held out is the task's (tabular: random, stratified, by group or time; ranking: per user or
by time, leak-free); the positions, their hash (the stage's identity) and split.json are written here. A tabular
task with data.id_column also writes the training and validation id values (tasks/unseen.py: a later run with
other data leaves them out of its champion comparison).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from trainpipe.data.split import SPLITS
from trainpipe.stages.context import StageContext, StageResult, StageSpec


def line(s: dict) -> str:
    return (f"{s.get('strategy')}: train {s.get('train', 0):,} · validation {s.get('validation', 0):,} · "
            f"test {s.get('test', 0):,}")


SPEC = StageSpec("split", sections=("split", "seed", "task", "data.target", "data.id_column", "ranking"), upstream=("ingest", "validate"),
                 line=line)


def run(ctx: StageContext) -> StageResult:
    split = ctx.task.split(ctx)
    parts = {name: split.parts[name].astype(np.int64) for name in SPLITS}
    np.savez(ctx.stage_dir / "split.npz", **parts)  # type: ignore[arg-type]  # numpy types **kwds as allow_pickle
    digest = hashlib.sha256(b"".join(parts[name].tobytes() for name in SPLITS)).hexdigest()[:16]
    (ctx.stage_dir / "split.json").write_text(json.dumps({**split.record, "hash": digest}, indent=2))  # in its place
    return StageResult(identity=digest, outputs={"split": "split.npz", "manifest": "split.json"},
                       artifacts=["split.json"], summary=split.summary,
                       metrics={f"rows_{name}": float(len(parts[name])) for name in SPLITS})
