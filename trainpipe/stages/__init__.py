"""One module per stage, each a plain `run(ctx) -> dict` read top to bottom.

The returned dict may hold: outputs (name -> file in the stage folder), metrics (logged to MLflow),
history (a JSON file of per-iteration values), artifacts (files logged to MLflow), summary (shown
to the user and in --json) and identity (what downstream cache keys depend on; default: the cache key).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trainpipe.errors import DataError


def load_table(ctx) -> pd.DataFrame:
    """The ingested table, read once per process and checked against the ingest manifest."""
    from trainpipe.data.io import file_stats, fingerprint, read_table

    ingest = ctx.manifest("ingest")
    cached = ctx.memo.get("frame")
    if cached is not None and ctx.memo.get("fingerprint") == ingest.get("identity"):
        return cached
    frame, files = read_table(ctx.config.data)
    recorded = ingest["outputs"].get("files_stats", [])
    now = file_stats(files)
    if all("size" in s for s in now) and recorded:
        if now != recorded:
            raise DataError(f"data.path: the data changed since it was ingested in run {ctx.run_id}; start a new run",
                            key="data.path")
    elif fingerprint(frame) != ingest["identity"]:
        raise DataError(f"data.path: the data changed since it was ingested in run {ctx.run_id}; start a new run",
                        key="data.path")
    ctx.memo.update(frame=frame, fingerprint=ingest["identity"])
    return frame


def load_arrays(ctx, stage: str, names: list[str]) -> dict[str, np.ndarray]:
    folder = ctx.upstream(stage)
    return {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in names}


def raw_rows(ctx, split: str) -> pd.DataFrame:
    """The ingested rows of one split, as they were before preprocessing (what a packaged model takes)."""
    frame = load_table(ctx)
    with np.load(ctx.upstream("split") / "split.npz") as parts:
        return frame.iloc[parts[split]]
