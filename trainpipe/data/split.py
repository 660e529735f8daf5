"""Train/validation/test splits as arrays of row positions. Seeded and pure."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainpipe.errors import SplitError

SPLITS = ("train", "validation", "test")

# Below these sizes a split's metrics say little (docs/operations.md, "Small splits"): with 50 rows the 95%
# interval of an accuracy near 0.85 is ±0.10, and with fewer than 10 rows of a class one row moves that
# class's recall by more than 0.1. A warning only: refusing a model is the gate's job.
MIN_SPLIT_ROWS = 50
MIN_CLASS_ROWS = 10


class SplitConfig(BaseModel):
    """Config section `split`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["auto", "random", "stratified", "group", "time"] = Field(
        "auto", description="auto: stratified for classification, random for regression.")
    validation: float = Field(0.15, gt=0, lt=1, description="Fraction of rows for validation.")
    test: float = Field(0.15, gt=0, lt=1, description="Fraction of rows for test.")
    group_column: str | None = Field(None, description="strategy group: rows sharing a value stay together.")
    time_column: str | None = Field(None, description="strategy time: oldest rows train, newest test.")
    seed: int | None = Field(None, description="Defaults to the top-level seed.")

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.validation + self.test >= 0.9:
            raise ValueError("split.validation + split.test must leave at least 10% of rows for training")
        if self.strategy == "group" and not self.group_column:
            raise ValueError("split.group_column is required when split.strategy is group")
        if self.strategy == "time" and not self.time_column:
            raise ValueError("split.time_column is required when split.strategy is time")
        return self


def resolve_strategy(config: SplitConfig, task: str) -> str:
    if config.strategy != "auto":
        return config.strategy
    return "stratified" if task in ("binary", "multiclass") else "random"


def _cut(order: np.ndarray, validation: float, test: float) -> dict[str, np.ndarray]:
    n = len(order)
    n_test = max(1, int(round(n * test)))
    n_val = max(1, int(round(n * validation)))
    return {"train": np.sort(order[: n - n_val - n_test]), "validation": np.sort(order[n - n_val - n_test: n - n_test]),
            "test": np.sort(order[n - n_test:])}


def random_split(n: int, validation: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """One seeded permutation, cut train | validation | test (reproducible in two lines of numpy)."""
    return _cut(np.random.default_rng(seed).permutation(n), validation, test)


def stratified_split(labels: pd.Series, validation: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Each class is permuted and cut separately, so every split keeps the class balance."""
    rng = np.random.default_rng(seed)
    codes, _ = pd.factorize(labels, sort=True)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for code in np.unique(codes):
        members = np.flatnonzero(codes == code)
        cut = _cut(members[rng.permutation(len(members))], validation, test) if len(members) >= 3 else {
            "train": members, "validation": members[:0], "test": members[:0]}
        for name in SPLITS:
            parts[name].append(cut[name])
    return {name: np.sort(np.concatenate(parts[name])) for name in SPLITS}


def group_split(groups: pd.Series, validation: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Whole groups go to one split; the fractions are of groups, not rows."""
    codes, uniques = pd.factorize(groups, use_na_sentinel=False)
    if len(uniques) < 3:
        raise SplitError(f"split.group_column: column {groups.name!r} has {len(uniques)} group(s); "
                         "a group split needs at least 3", key="split.group_column")
    assignment = np.empty(len(uniques), dtype=np.int8)
    cut = _cut(np.random.default_rng(seed).permutation(len(uniques)), validation, test)
    for i, name in enumerate(SPLITS):
        assignment[cut[name]] = i
    row_split = assignment[codes]
    return {name: np.flatnonzero(row_split == i) for i, name in enumerate(SPLITS)}


def time_split(times: pd.Series, validation: float, test: float) -> dict[str, np.ndarray]:
    """Oldest rows train, then validation, newest test (stable sort keeps ties in file order)."""
    if times.isna().any():
        raise SplitError(f"split.time_column: column {times.name!r} has missing values", key="split.time_column")
    order = np.argsort(times.to_numpy(), kind="stable")
    return _cut(order, validation, test)


def make_split(frame: pd.DataFrame, config: SplitConfig, task: str, target: str, seed: int) -> tuple[dict, str]:
    strategy = resolve_strategy(config, task)
    seed = config.seed if config.seed is not None else seed
    if len(frame) < 10:
        raise SplitError(f"split: {len(frame)} rows are too few to split into train/validation/test", key="split")
    for key, column in (("split.group_column", config.group_column), ("split.time_column", config.time_column)):
        if column and column not in frame.columns and strategy in key:
            raise SplitError(f"{key}: column {column!r} is not in the data", key=key)
    if strategy == "random":
        parts = random_split(len(frame), config.validation, config.test, seed)
    elif strategy == "stratified":
        parts = stratified_split(frame[target], config.validation, config.test, seed)
    elif strategy == "group":
        parts = group_split(frame[config.group_column], config.validation, config.test, seed)
    else:
        parts = time_split(frame[config.time_column], config.validation, config.test)
    for name in SPLITS:
        if len(parts[name]) == 0:
            raise SplitError(f"split.{'test' if name == 'test' else 'validation'}: the {name} split is empty",
                             key=f"split.{name}")
    if task in ("binary", "multiclass"):
        check_class_coverage(frame[target], parts)
    return parts, strategy


def small_split_warnings(parts: dict[str, np.ndarray], labels: pd.Series | None = None) -> list[str]:
    """One line per evaluation split (validation, test) too small for its metrics to mean much.

    labels: classification only; then a class with fewer than MIN_CLASS_ROWS rows in the split is named too.
    """
    warnings = []
    for name in ("validation", "test"):
        rows = len(parts[name])
        if rows < MIN_SPLIT_ROWS:
            warnings.append(f"split.{name}: the {name} split has only {rows} row(s); metrics on fewer than "
                            f"{MIN_SPLIT_ROWS} rows are too noisy to judge or compare models (add rows or raise "
                            f"split.{name})")
        if labels is not None:
            counts = labels.iloc[parts[name]].value_counts()
            small = counts[counts < MIN_CLASS_ROWS]
            if len(small):
                shown = ", ".join(f"{str(k)!r} ({v})" for k, v in small.sort_values().head(5).items())
                warnings.append(f"split.{name}: class(es) {shown} have fewer than {MIN_CLASS_ROWS} rows in the "
                                f"{name} split; metrics for them (recall, AUC) rest on a handful of rows")
    return warnings


def check_class_coverage(labels: pd.Series, parts: dict[str, np.ndarray]) -> None:
    """Every class seen in training must also be present in validation and test."""
    codes, uniques = pd.factorize(labels)

    def classes(rows: np.ndarray) -> set[int]:  # counting, not np.unique's sort: 3-5x less at 1M rows
        return set((np.flatnonzero(np.bincount(codes[rows] + 1, minlength=len(uniques) + 1)) - 1).tolist())

    train_classes = classes(parts["train"])
    for name in ("validation", "test"):
        missing = train_classes - classes(parts[name])
        if missing:
            counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
            shown = ", ".join(sorted(f"{str(uniques[m])!r} ({counts[m]} rows)" for m in missing)[:5])
            advice = ("every class needs at least 3 rows to appear in train, validation and test: add rows or drop "
                      "the class" if min(counts[m] for m in missing) < 3 else
                      f"use split.strategy: stratified or a larger split.{name} fraction")
            raise SplitError(f"split.{name}: class(es) {shown} of {labels.name!r} are absent from the {name} split; "
                             f"{advice}", key=f"split.{name}")
