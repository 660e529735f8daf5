"""Data schemas: infer a starting schema from a table, and validate a table against one with pandera.

Range and allowed-value checks learnt from last week's data are warnings unless marked `strict`,
so a retrain does not fail because a value is slightly beyond an old maximum or a new category
appeared. Presence, dtype, nullability and uniqueness are always hard checks.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from trainpipe.errors import ConfigError
from trainpipe.yamlfile import describe_yaml_error, load_yaml

DType = Literal["int", "float", "bool", "string", "category", "datetime"]
MAX_INFERRED_CATEGORIES = 50


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: DType = Field(description="int, float, bool, string, category or datetime (a hard check).")
    nullable: bool = Field(True, description="Missing values allowed (a hard check).")
    unique: bool = Field(False, description="Every value distinct, e.g. an id (a hard check).")
    min: int | float | None = Field(None, description="Smallest expected value (a warning unless strict).")
    max: int | float | None = Field(None, description="Largest expected value (a warning unless strict).")
    allowed: list[Any] | None = Field(None, description="Expected categories (a warning unless strict).")
    strict: bool = Field(False, description="Range/allowed-value violations fail the run instead of warning.")


class SchemaSpec(BaseModel):
    """What `trainpipe schema infer` writes and `schema.path` points at."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, ColumnSpec]


class SchemaConfig(BaseModel):
    """Config section `schema`: the column contract plus label checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str | None = Field(None, description="Schema YAML written by `trainpipe schema infer` (then edited).")
    columns: dict[str, ColumnSpec] = Field(default_factory=dict, description="Inline columns; override the file.")
    strict: bool = Field(False, description="Treat every range/allowed-value check as strict.")
    allow_extra_columns: bool = Field(True, description="Columns not in the schema are accepted (and used).")
    min_rows: int = Field(20, ge=1, description="Fewer rows than this fails validation.")
    min_class_count: int = Field(5, ge=1, description="Classification: every class needs at least this many rows.")


def load_schema(config: SchemaConfig) -> dict[str, ColumnSpec]:
    columns: dict[str, ColumnSpec] = {}
    if config.path:
        path = Path(config.path)
        if not path.exists():
            raise ConfigError(f"schema.path: schema file not found: {path}", key="schema.path")
        try:
            raw = load_yaml(path.read_text()) or {}
            columns.update(SchemaSpec.model_validate(raw).columns)
        except yaml.YAMLError as exc:
            raise ConfigError(f"schema.path: {path} is not valid YAML{describe_yaml_error(exc)}",
                              key="schema.path") from exc
        except ValueError as exc:
            first = str(exc).splitlines()
            detail = " ".join(first[1:3]).strip() if len(first) > 1 else str(exc)
            raise ConfigError(f"schema.path: {path} is not a valid schema: {detail}", key="schema.path") from exc
    columns.update(config.columns)
    return columns


def dtype_of(series: pd.Series) -> DType:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        non_null = series.dropna()
        if len(non_null) and np.all(np.mod(non_null.to_numpy(), 1) == 0) and series.isna().any():
            return "int"  # ints read from CSV with missing values arrive as floats
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if isinstance(series.dtype, pd.CategoricalDtype):
        return "category"
    return "string"


def infer_schema(frame: pd.DataFrame, max_categories: int = MAX_INFERRED_CATEGORIES) -> SchemaSpec:
    """A starting schema: dtypes, nullability, observed ranges and small category sets (non-strict)."""
    columns = {}
    for name in frame.columns:
        series = frame[name]
        dtype = dtype_of(series)
        spec: dict[str, Any] = {"dtype": dtype, "nullable": bool(series.isna().any())}
        if dtype in ("int", "float") and series.notna().any():
            lo, hi = series.min(), series.max()
            spec["min"], spec["max"] = (float(lo), float(hi))
            if dtype == "int":
                spec["min"], spec["max"] = int(lo), int(hi)
        if dtype in ("string", "category"):
            uniques = series.dropna().unique()
            if len(uniques) <= max_categories:
                spec["allowed"] = sorted(str(u) for u in uniques)
            if len(uniques) == len(series) and len(series) > 1:
                spec["unique"] = True
        columns[str(name)] = ColumnSpec(**spec)
    return SchemaSpec(columns=columns)


def schema_to_yaml(schema: SchemaSpec) -> str:
    doc = {"columns": {name: {"dtype": spec.dtype, "nullable": spec.nullable} | spec.model_dump(exclude_defaults=True)
                       for name, spec in schema.columns.items()}}
    header = ("# Inferred by `trainpipe schema infer`. Edit freely.\n"
              "# min/max/allowed are warnings unless you add `strict: true` to a column.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


_DTYPE_TESTS = {
    "int": lambda s: pd.api.types.is_integer_dtype(s) or (
        pd.api.types.is_float_dtype(s) and bool(np.all(np.mod(s.dropna().to_numpy(), 1) == 0))),
    "float": lambda s: pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s),
    "bool": lambda s: pd.api.types.is_bool_dtype(s),
    "string": lambda s: pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s)
    or isinstance(s.dtype, pd.CategoricalDtype),
    "category": lambda s: pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s)
    or isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(s),
    "datetime": lambda s: pd.api.types.is_datetime64_any_dtype(s),
}


def _pandera_schema(columns: dict[str, ColumnSpec], force_strict: bool, frame: pd.DataFrame) -> Any:
    import pandera.pandas as pa

    pa_columns = {}
    for name, spec in columns.items():
        soft = not (spec.strict or force_strict)
        dtype_test = _DTYPE_TESTS[spec.dtype]
        checks = [pa.Check(dtype_test, element_wise=False, error=f"dtype {spec.dtype}")]
        if name in frame.columns and not dtype_test(frame[name]):
            # value checks on a column of the wrong type only produce noise; the dtype error says it
            pa_columns[name] = pa.Column(None, checks=checks, nullable=True, required=True)
            continue
        if spec.min is not None or spec.max is not None:
            if spec.dtype in ("int", "float"):
                lo = -np.inf if spec.min is None else spec.min
                hi = np.inf if spec.max is None else spec.max
                checks.append(pa.Check.in_range(lo, hi, raise_warning=soft, error=f"range [{spec.min}, {spec.max}]"))
        if spec.allowed is not None:
            checks.append(pa.Check(lambda s, allowed=tuple(spec.allowed): s.astype(str).isin(allowed) | s.isna(),
                                   error=f"allowed values {list(spec.allowed)[:10]}", raise_warning=soft))
        pa_columns[name] = pa.Column(None, checks=checks, nullable=spec.nullable, unique=spec.unique,
                                     required=True)
    return pa.DataFrameSchema(pa_columns, strict=False)


def _describe_failures(cases: pd.DataFrame) -> list[dict]:
    """One entry per (column, check) with a count and a few example values."""
    issues: list[dict[str, Any]] = []
    cases = cases.copy()
    cases["column"] = cases["column"].fillna("")
    for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
        examples = [v for v in group["failure_case"].head(5).tolist() if v is not None and v == v]
        check = str(check)
        if check == "column_in_dataframe":
            issues.append({"column": str(group["failure_case"].iloc[0]), "check": "required",
                           "message": f"required column {group['failure_case'].iloc[0]!r} is missing"})
            continue
        issues.append({"column": column, "check": check, "count": int(len(group)), "examples": [str(e) for e in examples],
                       "message": failure_message(column, check, len(group), examples)})
    return issues


def failure_message(column: str, check: str, count: int, examples: list) -> str:
    """One failed check of one column in one line (a streamed table sums the counts of its batches first)."""
    if check == "not_nullable":
        return f"column {column!r}: {count} null value(s) in a non-nullable column"
    if check.startswith("dtype "):
        return f"column {column!r}: expected {check}"
    if check == "field_uniqueness":
        return f"column {column!r}: {count} duplicated value(s) in a unique column, e.g. {examples[:3]}"
    return f"column {column!r}: {count} value(s) fail {check}, e.g. {examples[:3]}"


def _describe_warning(text: str) -> dict:
    """pandera's warning text -> one line naming the column, the check and examples."""
    import re

    match = re.match(r"Column '(.+?)' failed .*?: (.*?) failure cases: (.*)", text, re.S)
    if not match:
        return {"message": text.splitlines()[0]}
    column, check, cases = match.groups()
    examples = [c.strip() for c in cases.split(",")]
    return {"column": column, "check": check, "count": len(examples), "examples": examples[:5],
            "message": f"column {column!r}: {len(examples)} value(s) outside {check}, e.g. {', '.join(examples[:3])} "
                       "(warning only; add strict: true to the column to fail on it)"}


def validate_frame(frame: pd.DataFrame, columns: dict[str, ColumnSpec], config: SchemaConfig) -> dict:
    """Run the pandera schema lazily and return a report with every error and warning."""
    errors: list[dict] = []
    warns: list[dict] = []
    if not config.allow_extra_columns and columns:
        for extra in sorted(set(map(str, frame.columns)) - set(columns)):
            errors.append({"column": extra, "check": "unexpected", "message": f"column {extra!r} is not in the schema"})
    if not columns:  # nothing declared: skip pandera (and its import) entirely
        return {"errors": errors, "warnings": warns}
    import pandera.pandas as pa

    schema = _pandera_schema(columns, config.strict, frame)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            errors.extend(_describe_failures(exc.failure_cases))
    for w in caught:
        if type(w.message).__name__ == "SchemaWarning":
            warns.append(_describe_warning(str(w.message)))
    return {"errors": errors, "warnings": warns}


def label_checks(labels: pd.Series, task: str, config: SchemaConfig, target_key: str) -> list[dict]:
    """No null labels; classification needs ≥ 2 classes with `min_class_count` rows each."""
    counts = labels.dropna().value_counts() if task in ("binary", "multiclass") else None
    return label_problems(str(labels.name), labels.dtype, int(labels.isna().sum()), counts, task, config, target_key)


def label_problems(name: str, dtype: Any, nulls: int, counts: pd.Series | None, task: str, config: SchemaConfig,
                   target_key: str) -> list[dict]:
    """`label_checks` from the label's null count and class counts (a streamed table sums them batch by batch)."""
    problems = []
    labels = pd.Series([], dtype=dtype, name=name)  # names and the dtype in the messages
    if nulls:
        problems.append({"column": labels.name, "check": "label_not_null",
                         "message": f"{target_key}: {nulls} row(s) have a null label in column {labels.name!r}"})
    if task in ("binary", "multiclass"):
        assert counts is not None, "classification labels come with their class counts (most frequent first)"
        if len(counts) < 2:
            only = [str(v) for v in counts.index[:1]]
            problems.append({"column": labels.name, "check": "label_classes",
                             "message": f"{target_key}: column {labels.name!r} has a single class {only}; "
                                        "classification needs at least 2"})
        elif task == "binary" and len(counts) > 2:
            problems.append({"column": labels.name, "check": "label_classes",
                             "message": f"{target_key}: task is binary but column {labels.name!r} has "
                                        f"{len(counts)} classes; use task: multiclass"})
        rare = counts[counts < config.min_class_count]
        if len(counts) >= 2 and len(rare):
            shown = ", ".join(f"{k!r} ({v})" for k, v in rare.head(5).items())
            problems.append({"column": labels.name, "check": "label_min_class_count",
                             "message": f"schema.min_class_count: class(es) {shown} of {labels.name!r} have fewer "
                                        f"than {config.min_class_count} rows"})
    elif not pd.api.types.is_numeric_dtype(labels):
        problems.append({"column": labels.name, "check": "label_numeric",
                         "message": f"{target_key}: regression needs a numeric label; {labels.name!r} is {labels.dtype}"})
    return problems
