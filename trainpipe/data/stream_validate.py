"""validate's checks over a streamed table: the same pandera schema and label checks, run per batch and summed.

Per batch: pandera (presence, dtype, nulls, ranges, allowed values), infinite values, label nulls and class counts,
which columns hold a value. Across batches: counts are summed and the first examples kept; `unique` columns are
checked over the whole table through 64-bit hashes of their values (8 bytes a row of such a column), because a
per-batch uniqueness check would miss a duplicate in another batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trainpipe.data.features import empty_column_warning
from trainpipe.data.finite import describe as describe_infinite
from trainpipe.data.finite import infinite_counts
from trainpipe.data.schema import ColumnSpec, SchemaConfig, failure_message, label_problems, validate_frame
from trainpipe.data.stream_split import keys_of


class StreamChecks:
    """Accumulates one report over batches; `report()` gives what `TabularTask.check_table` gives for a frame."""

    def __init__(self, columns: dict[str, ColumnSpec], schema: SchemaConfig, target: str, task: str,
                 check_infinite: bool):
        self.columns, self.schema, self.target, self.task = columns, schema, target, task
        self.check_infinite = check_infinite
        # uniqueness is checked over the whole table below, not per batch
        self.per_batch = {name: spec.model_copy(update={"unique": False}) for name, spec in columns.items()}
        self.errors: dict[tuple[str, str], dict[str, Any]] = {}
        self.warnings: dict[tuple[str, str], dict[str, Any]] = {}
        self.unique_keys: dict[str, list[np.ndarray]] = {name: [] for name, s in columns.items() if s.unique}
        self.rows, self.label_nulls = 0, 0
        self.label_dtype: Any = None
        self.class_counts: pd.Series = pd.Series(dtype=np.int64)
        self.infinite: dict[str, list] = {}
        self.has_value: set[str] = set()
        self.all_columns: list[str] = []

    def update(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        if not self.all_columns:
            self.all_columns = [str(c) for c in frame.columns]
        report = validate_frame(frame, self.per_batch, self.schema)
        for entry in report["errors"]:
            key = (str(entry.get("column")), str(entry.get("check")))
            known = self.errors.setdefault(key, {**entry, "count": 0, "examples": []})
            known["count"] += int(entry.get("count", 1))
            known["examples"] = (known["examples"] + list(entry.get("examples", [])))[:5]
        for entry in report["warnings"]:
            self.warnings.setdefault((str(entry.get("column")), str(entry.get("check"))), entry)
        for name in self.unique_keys:
            if name in frame.columns:
                self.unique_keys[name].append(keys_of(frame[name].dropna()))
        labels = frame[self.target]
        self.label_dtype = labels.dtype if self.label_dtype is None else self.label_dtype
        self.label_nulls += int(labels.isna().sum())
        if self.task in ("binary", "multiclass"):
            self.class_counts = self.class_counts.add(labels.dropna().value_counts(), fill_value=0).astype(np.int64)
        if self.check_infinite:
            for column, (count, example) in infinite_counts(frame).items():
                old = self.infinite.setdefault(column, [0, example])
                old[0] += count
        self.has_value.update(str(c) for c in frame.columns if frame[c].notna().any())

    def _unique_errors(self) -> list[dict]:
        errors = []
        for name, parts in self.unique_keys.items():
            keys = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
            duplicated = len(keys) - len(np.unique(keys))
            if duplicated:
                errors.append({"column": name, "check": "field_uniqueness", "count": int(duplicated), "examples": [],
                               "message": failure_message(name, "field_uniqueness", duplicated, [])})
        return errors

    def report(self, not_features: set[str]) -> dict:
        errors = []
        for (column, check), entry in self.errors.items():
            if "count" in entry and check not in ("required", "unexpected"):
                entry = {**entry, "message": failure_message(column, check, entry["count"], entry["examples"])}
            errors.append(entry)
        errors += self._unique_errors()
        if self.rows < self.schema.min_rows:
            errors.append({"check": "min_rows", "message": f"schema.min_rows: {self.rows} rows, fewer than the "
                           f"{self.schema.min_rows} required"})
        counts = self.class_counts.sort_values(ascending=False, kind="stable") if self.task != "regression" else None
        errors += label_problems(self.target, self.label_dtype, self.label_nulls, counts, self.task, self.schema,
                                 "data.target")
        errors += [{"column": column, "check": "finite", "count": count, "message": describe_infinite(column, count, example)}
                   for column, (count, example) in self.infinite.items()]
        warnings = list(self.warnings.values())
        warnings += [{"column": column, "check": "all_missing",
                      "message": empty_column_warning(column, self.rows)}
                     for column in self.all_columns if column not in not_features and column not in self.has_value]
        return {"errors": errors, "warnings": warnings, "rows": self.rows, "columns_checked": len(self.columns),
                "passed": not errors, "status": "passed" if not errors else "failed", "streamed": True}
