"""`trainpipe init`: look at a data file and write a ready-to-run, commented pipeline.yaml.

Tabular tasks get an inferred schema.yaml too; `--task ranking` checks the interactions file instead and
writes defaults a MovieLens-like ratings table runs with: two_tower with in-batch softmax and log-Q
correction, leave-last-out by time, users with fewer than 3 positives dropped (one each for train,
validation and test), Recall/NDCG@10/20/50 against the three baselines, and a gate that registers
the model only if it beats the best of them on test (gates.beat_baselines).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any
from pathlib import Path

import pandas as pd

from trainpipe.data.io import DataConfig, apply_coercions, read_table
from trainpipe.data.schema import infer_schema, schema_to_yaml
from trainpipe.errors import ConfigError, DataError

NUMERIC_TEXT_SHARE = 0.95  # a text column is numbers-with-blanks when this share of values parses

def infer_task(labels: pd.Series) -> str:
    values = labels.dropna()
    distinct = values.nunique()
    if distinct <= 2:
        return "binary"
    if pd.api.types.is_float_dtype(values) and not (values % 1 == 0).all():
        return "regression"
    if pd.api.types.is_numeric_dtype(values) and distinct > 20:
        return "regression"
    return "multiclass"


def numeric_text_columns(frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Text columns that are really numbers with a few blanks (e.g. ' ' in a charges column)."""
    found = []
    for column in frame.columns:
        series = frame[column]
        if column in exclude or pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        text = series.dropna().astype("string").str.strip()
        text = text[text != ""]
        if len(text) == 0:
            continue
        parsed = pd.to_numeric(text, errors="coerce")
        if parsed.notna().mean() >= NUMERIC_TEXT_SHARE:
            found.append(str(column))
    return found


def id_columns(frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Text or integer columns with a distinct value on every row: identifiers, not features."""
    if len(frame) < 20:
        return []
    found = []
    for column in frame.columns:
        series = frame[column]
        if column in exclude or pd.api.types.is_float_dtype(series):
            continue
        if series.notna().all() and series.nunique() == len(series):
            looks_named = any(tok in str(column).lower() for tok in ("id", "key", "uuid", "code", "number"))
            if not pd.api.types.is_numeric_dtype(series) or looks_named:
                found.append(str(column))
    return found


def default_model() -> str:
    for name, module in (("xgboost", "xgboost"), ("lightgbm", "lightgbm")):
        if importlib.util.find_spec(module) is not None:
            return name
    return "sklearn"


def scaffold(directory: Path, data: str, target: str, task: str | None = None, model: str | None = None,
             force: bool = False) -> dict:
    directory = Path(directory)
    pipeline_file, schema_file = directory / "pipeline.yaml", directory / "schema.yaml"
    if pipeline_file.exists() and not force:
        raise ConfigError(f"init: {pipeline_file} already exists; pass --force to overwrite", key="init")
    data_path = Path(data).resolve()
    frame, files = read_table(DataConfig(path=str(data_path), target=target))
    if len(frame) == 0:
        raise DataError(f"--data: {data} is empty", key="data.path")
    if target not in frame.columns:
        raise DataError(f"--target: column {target!r} is not in {data} (columns: {', '.join(map(str, frame.columns[:15]))})",
                        key="data.target")
    task = task or infer_task(frame[target])
    model = model or default_model()
    coerce = {c: "float" for c in numeric_text_columns(frame, {target})}
    frame = apply_coercions(frame, coerce)
    ids = id_columns(frame, {target})
    positive = None
    if task == "binary":
        counts = frame[target].value_counts()
        positive = counts.index[-1]  # the minority class is the one worth detecting
        positive = positive.item() if hasattr(positive, "item") else positive

    directory.mkdir(parents=True, exist_ok=True)
    schema = infer_schema(frame)
    schema_file.write_text(schema_to_yaml(schema))
    rel_data = os.path.relpath(data_path, directory.resolve())
    pipeline_file.write_text(render(directory.resolve().name, task, rel_data, target, ids, coerce, positive, model))
    return {"pipeline": str(pipeline_file), "schema": str(schema_file), "task": task, "model": model,
            "rows": len(frame), "id_columns": ids, "coerced": sorted(coerce), "positive_class": positive}


def _yaml_scalar(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def model_lines(model: str, task: str) -> list[str]:
    """The `model:` and `training:` sections for one family, from its class's ScaffoldDefaults."""
    from trainpipe.models import get_family

    family = get_family(model)
    spec = family.scaffold
    if spec is None:
        raise ConfigError(f"--model: trainpipe init has no defaults for {model} (its class sets no `scaffold`); "
                          "write the model section by hand", key="model.type")
    lines = ["model:", f"  type: {model}"]
    if spec.estimator is not None:
        lines.append(f"  estimator: {spec.estimator['regression' if task == 'regression' else 'classification']}")
    if spec.params:
        lines.append("  params:")
        lines += [f"    {name}: {_yaml_scalar(value)}   # {comment}" for name, (value, comment) in spec.params.items()]
    else:
        lines.append("  params: {}")
    searched = ", ".join(family.default_search_space(task))
    lines += ["  # Other parameters take the family's defaults (docs/configuration.md).",
              f"  # `trainpipe tune` searches {searched};",
              "  # a parameter set in params is fixed instead, and tune lists it.",
              "",
              "training:"]
    if spec.early_stopping_rounds is None:
        lines[-1] += " {}"
    else:
        lines.append("  early_stopping_rounds: {}   # {}".format(*spec.early_stopping_rounds))
    return lines


def render(name: str, task: str, data: str, target: str, ids: list[str], coerce: dict, positive: Any, model: str) -> str:
    lines = [
        f"# trainpipe pipeline for {data}, written by `trainpipe init`.",
        "# Run it:       trainpipe run pipeline.yaml",
        "# Every key and its default: docs/configuration.md",
        f"name: {_yaml_scalar(name)}",
        f"task: {task}            # binary | multiclass | regression",
        "seed: 42",
        "",
        "data:",
        f"  path: {_yaml_scalar(data)}   # relative to this file; also a glob or an fsspec URL",
        f"  target: {_yaml_scalar(target)}",
    ]
    if ids:
        lines.append(f"  id_column: {_yaml_scalar(ids[0])}   # unique per row: passed through, never a feature")
    if positive is not None:
        lines.append(f"  positive_class: {_yaml_scalar(positive)}   # the minority class counts as positive")
    if coerce:
        lines.append("  coerce:   # text columns that hold numbers; blanks become missing")
        lines += [f"    {_yaml_scalar(c)}: float" for c in sorted(coerce)]
    lines += [
        "",
        "schema:",
        "  path: schema.yaml     # inferred; ranges and category sets warn unless a column says strict: true",
        "  min_class_count: 5" if task != "regression" else "  min_rows: 20",
        "",
        "split:",
        f"  strategy: {'stratified' if task != 'regression' else 'random'}",
        "  validation: 0.15",
        "  test: 0.15",
        "",
        "features:",
        "  drop: []              # columns never used as features",
        "  categorical:",
        "    max_categories: 50  # rarer categories are grouped",
        "",
    ]
    lines += model_lines(model, task)
    lines += [
        "",
        "tracking:",
        "  experiment: " + _yaml_scalar(name),
        "",
        "gates:                  # a model that fails a gate is not registered (exit code 3)",
        "  min: {}               # e.g. {test_roc_auc: 0.8}; max: {latency_p99_row_ms: 0.05}",
        "  champion:",
        "    max_regression: 0.0 # may not be worse than the current champion on this run's test rows",
        "",
        "registry:",
        "  promotion: auto       # the first passing version, then each one that beats the champion",
        "",
    ]
    return "\n".join(lines)


# -- task ranking ------------------------------------------------------------------------------------------
def _check_ranking_columns(frame: pd.DataFrame, data: str, options: dict[str, str | None]) -> None:
    shown = ", ".join(map(str, frame.columns[:15]))
    for flag, column in options.items():
        if column is not None and column not in frame.columns:
            raise DataError(f"--{flag}: column {column!r} is not in {data} (columns: {shown})", key=f"ranking.{flag}")
    rating = options.get("rating")
    if rating is not None and not pd.api.types.is_numeric_dtype(frame[rating]):
        raise DataError(f"--rating: column {rating!r} should hold numbers", key="ranking.rating")


def scaffold_ranking(directory: Path, data: str, user: str | None, item: str | None, time: str | None = None,
                     rating: str | None = None, positive_threshold: float | None = None, force: bool = False) -> dict:
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
    _check_ranking_columns(frame, data, {"user": user, "item": item, "time": time, "rating": rating})
    positives = len(frame) if positive_threshold is None else int((frame[rating] >= positive_threshold).sum())
    if positives == 0:
        raise DataError(f"--positive-threshold: no rating in {rating!r} is >= {positive_threshold}",
                        key="--positive-threshold")
    directory.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(data_path, directory.resolve())
    pipeline_file.write_text(render_ranking(directory.resolve().name, rel, user, item, time, rating, positive_threshold))
    return {"pipeline": str(pipeline_file), "task": "ranking", "model": "two_tower", "rows": len(frame),
            "positives": positives, "users": int(frame[user].nunique()), "items": int(frame[item].nunique())}


def render_ranking(name: str, data: str, user: str, item: str, time: str | None, rating: str | None,
                   threshold: float | None) -> str:
    q = _yaml_scalar

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
        "  params:                  # measured on real ratings: docs/ranking.md, Defaults on real data",
        "    epochs: 40             # at most: early stopping ends training when validation recall stalls",
        "    batch_size: 256",
        "    embedding_dim: 128",
        "    id_dim: 128",
        "    weight_decay: 0.01     # regularises the id embeddings (ids with few interactions)",
        "    loss: softmax          # in-batch sampled softmax with log-Q correction; or bpr, triplet",
        "",
        "training:",
        "  early_stopping_rounds: 6   # epochs without a better validation recall_at_10 (per-epoch recall is noisy)",
        "",
        "tracking:",
        f"  experiment: {q(name)}",
        "",
        "gates:                       # a model that fails a gate is not registered (exit code 3)",
        "  beat_baselines: true       # test recall_at_10 must be at least every baseline's (PureSVD, most-popular)",
        "  min: {}                    # e.g. {test_lift_recall_at_10: 1.5}: beat most-popular by 50%",
        "",
        "registry:",
        "  promotion: auto",
        "",
    ]
    return "\n".join(lines)
