"""`trainpipe init --task ranking`: check the interactions file and write a ready-to-run pipeline.

Defaults a MovieLens-like ratings table runs with: two_tower with in-batch softmax and log-Q
correction, leave-last-out by time, users with fewer than 3 positives dropped (one each for train,
validation and test), Recall/NDCG@10/20/50 against the three baselines.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from trainpipe.errors import ConfigError, DataError


def _check(frame: pd.DataFrame, data: str, options: dict[str, str | None]) -> None:
    shown = ", ".join(map(str, frame.columns[:15]))
    for flag, column in options.items():
        if column is not None and column not in frame.columns:
            raise DataError(f"--{flag}: column {column!r} is not in {data} (columns: {shown})", key=f"ranking.{flag}")
    rating = options.get("rating")
    if rating is not None and not pd.api.types.is_numeric_dtype(frame[rating]):
        raise DataError(f"--rating: column {rating!r} should hold numbers", key="ranking.rating")


def scaffold_ranking(directory: Path, data: str, user: str | None, item: str | None, time: str | None = None,
                     rating: str | None = None, positive_threshold: float | None = None, force: bool = False) -> dict:
    from trainpipe.data.io import DataConfig, read_table

    if not user or not item:
        raise ConfigError("init: --task ranking needs --user COL and --item COL", key="--user" if not user else "--item")
    if positive_threshold is not None and rating is None:
        raise ConfigError("--positive-threshold: needs --rating COL (the column it applies to)", key="--positive-threshold")
    directory = Path(directory)
    pipeline_file = directory / "pipeline.yaml"
    if pipeline_file.exists() and not force:
        raise ConfigError(f"init: {pipeline_file} already exists; pass --force to overwrite", key="init")
    data_path = Path(data).resolve()
    frame, _ = read_table(DataConfig(path=str(data_path)))
    if len(frame) == 0:
        raise DataError(f"--data: {data} is empty", key="data.path")
    _check(frame, data, {"user": user, "item": item, "time": time, "rating": rating})
    positives = len(frame) if positive_threshold is None else int((frame[rating] >= positive_threshold).sum())
    if positives == 0:
        raise DataError(f"--positive-threshold: no rating in {rating!r} is >= {positive_threshold}",
                        key="--positive-threshold")
    directory.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(data_path, directory.resolve())
    pipeline_file.write_text(render(directory.resolve().name, rel, user, item, time, rating, positive_threshold))
    return {"pipeline": str(pipeline_file), "task": "ranking", "model": "two_tower", "rows": len(frame),
            "positives": positives, "users": int(frame[user].nunique()), "items": int(frame[item].nunique())}


def render(name, data, user, item, time, rating, threshold) -> str:
    from trainpipe.scaffold import _yaml_scalar as q

    lines = [
        f"# trainpipe ranking pipeline for {data}, written by `trainpipe init`.",
        "# Run it:  trainpipe run pipeline.yaml      Then:  trainpipe recommend models:/NAME@champion --user ID",
        "# Data format, splits, losses and metrics: docs/ranking.md; every key: docs/configuration.md",
        f"name: {q(name)}",
        "task: ranking",
        "seed: 42",
        "",
        "data:",
        f"  path: {q(data)}   # relative to this file",
        "",
        "ranking:",
        f"  user: {q(user)}",
        f"  item: {q(item)}",
        f"  time: {q(time)}" if time else "  time: null             # no timestamp: row order stands for time",
    ]
    if rating:
        lines.append(f"  rating: {q(rating)}")
    if threshold is not None:
        lines.append(f"  positive_threshold: {q(float(threshold))}   # lower ratings are not positives (dropped)")
    lines += [
        "  duplicates: last       # a repeated (user, item) pair keeps its newest interaction",
        "  min_user_interactions: 3   # one each for train, validation and test",
        "  min_item_interactions: 1",
        "  split:",
        "    strategy: leave_last   # each user's newest interaction is test, the one before validation",
        "    test_per_user: 1",
        "    validation_per_user: 1",
        "  k: [10, 20, 50]",
        "  baselines: [popularity, random, svd]",
        "",
        "model:",
        "  type: two_tower",
        "  params:",
        "    epochs: 20",
        "    batch_size: 256",
        "    embedding_dim: 64",
        "    loss: softmax          # in-batch sampled softmax with log-Q correction; or bpr, triplet",
        "",
        "training:",
        "  early_stopping_rounds: 3   # epochs without a better validation recall_at_10",
        "",
        "tracking:",
        f"  experiment: {q(name)}",
        "",
        "gates:                       # a model that fails a gate is not registered (exit code 3)",
        "  min: {}                    # e.g. {test_lift_recall_at_10: 1.5}: beat most-popular by 50%",
        "",
        "registry:",
        "  promotion: auto",
        "",
    ]
    return "\n".join(lines)
