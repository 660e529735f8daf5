"""Reading tables from paths, globs and fsspec URLs; content fingerprints and column statistics."""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from trainpipe.data.finite import InfinitePolicy, apply_infinite_policy
from trainpipe.errors import DataError
from trainpipe.redaction import redact_url_credentials

Coercion = Literal["float", "int", "string", "category", "datetime", "bool"]


class DataConfig(BaseModel):
    """Config section `data`: where the table is and which column is the label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="File path, glob (data/*.parquet) or fsspec URL (s3://bucket/x.parquet).")
    target: str | None = Field(None, description="Label column (required by every task but ranking).")
    format: Literal["auto", "csv", "parquet"] = Field("auto", description="auto: from the file extension.")
    id_column: str | None = Field(None, description="Row id passed through, never a feature.")
    positive_class: str | int | bool | None = Field(
        None, description="Binary tasks: the label counted as positive (default: last in sorted order)."
    )
    coerce: dict[str, Coercion] = Field(
        default_factory=dict, description="Columns cast after reading; unparseable values become missing."
    )
    csv_options: dict[str, Any] = Field(default_factory=dict, description="Extra pandas.read_csv arguments "
                                        "(e.g. encoding: latin-1, sep: ';').")
    infinite: InfinitePolicy = Field("error", description="Numeric values that are ±inf or beyond float32's range "
                                     "(e.g. 1e308): error names the column; missing treats them as missing values "
                                     "(in training and in predict).")
    streaming: Literal["auto", "on", "off"] = Field(
        "auto", description="Data larger than memory (docs/distributed.md): on streams Parquet row groups through "
        "every stage; auto streams when the table's in-memory size exceeds 30% of available memory and the model "
        "can stream (xgboost, torch_mlp); off always loads the table whole.")
    stream_batch_rows: int = Field(65_536, ge=1_000, description="Streaming: rows read per batch and per row group "
                                   "of the features matrices.")
    stream_fit_rows: int = Field(200_000, ge=1_000, description="Streaming: training rows sampled (seeded) to fit "
                                 "the preprocessing (imputation, scaling, category encoders).")


def expand_paths(path: str) -> list[str]:
    """A path, a glob or an fsspec URL to a sorted list of concrete files."""
    if "://" in path:
        import fsspec

        files = fsspec.open_files(path)
        found = sorted(f.full_name if hasattr(f, "full_name") else f.path for f in files)
        if not found:
            raise DataError(f"data.path: no file matches {path!r}", key="data.path")
        protocol = path.split("://", 1)[0]
        return [p if "://" in p else f"{protocol}://{p}" for p in found]
    if any(ch in path for ch in "*?["):
        found = sorted(glob.glob(path, recursive=True))
        if not found:
            raise DataError(f"data.path: no file matches the glob {path!r}", key="data.path")
        return found
    if not os.path.exists(path):
        raise DataError(f"data.path: file not found: {path}", key="data.path")
    if os.path.isdir(path):
        found = sorted(str(p) for p in Path(path).rglob("*") if p.suffix in (".parquet", ".csv", ".pq"))
        if not found:
            raise DataError(f"data.path: folder {path} holds no .parquet or .csv file", key="data.path")
        return found
    return [path]


def _format_of(path: str, configured: str) -> str:
    if configured != "auto":
        return configured
    name = path.lower().removesuffix(".gz").removesuffix(".zst")
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    raise DataError(f"data.format: cannot tell the format of {path}; set data.format to csv or parquet",
                    key="data.format")


# read_csv arguments that change how the header line itself is read (the duplicate-name check re-reads it).
_HEADER_OPTIONS = ("sep", "delimiter", "encoding", "encoding_errors", "compression", "quotechar", "quoting",
                   "escapechar", "doublequote", "skipinitialspace", "skiprows", "comment", "dialect", "engine",
                   "lineterminator", "skip_blank_lines", "storage_options")


def _duplicate_header_names(frame: pd.DataFrame, path: str, options: dict) -> list[str]:
    """Names the CSV header holds more than once (pandas silently renames the copies `name.1`, `name.2`).

    The header is re-read only when a column looks like such a copy, so clean files cost nothing.
    """
    names = set(map(str, frame.columns))
    suspects = [c for c in names if (m := re.fullmatch(r"(.+)\.(\d+)", c)) and m.group(1) in names]
    if not suspects or options.get("names") is not None or options.get("header", "infer") not in ("infer", 0):
        return []
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False,
                         **{k: v for k, v in options.items() if k in _HEADER_OPTIONS}).iloc[0].tolist()
    return sorted({name for name in header if header.count(name) > 1})


def _read_one(path: str, fmt: str, csv_options: dict) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        options = dict(csv_options)
        if path.lower().endswith(".tsv"):
            options.setdefault("sep", "\t")
        frame = pd.read_csv(path, **options)
        duplicates = _duplicate_header_names(frame, path, options)
        if duplicates:
            raise DataError(f"data.path: {path}: the header names column {duplicates[0]!r} more than once (pandas "
                            f"would read the copy as {duplicates[0] + '.1'!r}); rename or remove the duplicate",
                            key="data.path")
        return frame
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        encoding = csv_options.get("encoding", "utf-8")
        raise DataError(f"data.csv_options.encoding: cannot decode {path} as {encoding} ({exc.reason}); set "
                        "data.csv_options.encoding to the file's encoding, e.g. latin-1 or cp1252",
                        key="data.csv_options.encoding") from exc
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise DataError(f"data.path: cannot parse CSV {path}: {detail}", key="data.path") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"data.path: {path} is empty", key="data.path") from exc
    except (OSError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data.path: cannot read {fmt} file {path}: {detail}", key="data.path") from exc
    except Exception as exc:  # pyarrow raises its own ArrowInvalid and friends for corrupt files
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data.path: cannot read {fmt} file {path}: {detail}", key="data.path") from exc


def read_table(config: DataConfig) -> tuple[pd.DataFrame, list[str]]:
    """Read every file the path names into one frame (row order = sorted file order).

    Files of one folder or glob must share one schema: pandas would otherwise line them up by name,
    leaving NaN where a file lacks a column and two columns where names differ in case.
    """
    files = expand_paths(config.path)
    frames = [_read_one(f, _format_of(f, config.format), config.csv_options) for f in files]
    if len(frames) > 1:
        check_same_schema(frames, files, skip_dtypes=set(config.coerce))
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    frame = apply_coercions(frame, config.coerce)
    if config.infinite == "missing":  # with `error`, the validate stage names the column
        frame = apply_infinite_policy(frame, "missing", "data.path")
    return frame, files


def _kind(series: pd.Series) -> str:
    """What a column holds, coarsely: int vs float (or a missing-free vs a gappy int column) is no conflict."""
    if series.isna().all():
        return "nothing"
    if pd.api.types.is_bool_dtype(series):
        return "booleans"
    if pd.api.types.is_numeric_dtype(series):
        return "numbers"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetimes"
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    return {"boolean": "booleans", "integer": "numbers", "floating": "numbers", "mixed-integer-float": "numbers",
            "decimal": "numbers", "datetime64": "datetimes", "datetime": "datetimes", "date": "datetimes"}.get(
        inferred, "text")


def schema_differences(reference: pd.DataFrame, other: pd.DataFrame,
                       skip_dtypes: AbstractSet[str] = frozenset()) -> list[str]:
    """How `other`'s columns differ from `reference`'s: missing, extra, case-different names, kind conflicts."""
    ref_cols, cols = [str(c) for c in reference.columns], [str(c) for c in other.columns]
    missing = [c for c in ref_cols if c not in cols]
    extra = [c for c in cols if c not in ref_cols]
    problems = []
    by_lower = {c.lower(): c for c in missing}
    cased = [(by_lower[c.lower()], c) for c in extra if c.lower() in by_lower]
    if cased:
        problems.append("names that differ only in case: " + ", ".join(f"{a!r} vs {b!r}" for a, b in cased))
        missing = [c for c in missing if c not in {a for a, _ in cased}]
        extra = [c for c in extra if c not in {b for _, b in cased}]
    if missing:
        problems.append(f"missing column(s) {', '.join(map(repr, missing[:5]))}" + (" ..." if len(missing) > 5 else ""))
    if extra:
        problems.append(f"extra column(s) {', '.join(map(repr, extra[:5]))}" + (" ..." if len(extra) > 5 else ""))
    for column in ref_cols:
        if column in cols and column not in skip_dtypes and reference[column].dtype != other[column].dtype:
            kinds = _kind(reference[column]), _kind(other[column])
            if "nothing" not in kinds and kinds[0] != kinds[1]:
                problems.append(f"column {column!r} holds {kinds[1]} here but {kinds[0]} in the first file")
    return problems


def check_same_schema(frames: list[pd.DataFrame], files: list[str], skip_dtypes: AbstractSet[str] = frozenset()) -> None:
    """Refuse files that do not share the first file's columns and column kinds (data.coerce'd columns: names only)."""
    differing = [(f, problems) for frame, f in zip(frames[1:], files[1:])
                 if (problems := schema_differences(frames[0], frame, skip_dtypes))]
    if differing:
        path, problems = differing[0]
        more = f" ({len(differing) - 1} more file(s) differ too)" if len(differing) > 1 else ""
        raise DataError(f"data.path: the files do not share one schema: {path} differs from {files[0]}: "
                        f"{'; '.join(problems)}{more}", key="data.path")


def apply_coercions(frame: pd.DataFrame, coerce: Mapping[str, str]) -> pd.DataFrame:
    for column, kind in coerce.items():
        if column not in frame.columns:
            raise DataError(f"data.coerce: column {column!r} is not in the data", key=f"data.coerce.{column}")
        series = frame[column]
        if kind in ("float", "int"):
            if not pd.api.types.is_numeric_dtype(series):
                series = series.astype("string").str.strip()
            values = pd.to_numeric(series, errors="coerce")
            frame[column] = values.astype("float64") if kind == "float" else values.astype("Int64")
        elif kind == "datetime":
            frame[column] = pd.to_datetime(series, errors="coerce")
        elif kind == "bool":
            frame[column] = series.astype("boolean")
        else:
            frame[column] = series.astype("category" if kind == "category" else "string")
    return frame


def file_stats(files: list[str]) -> list[dict]:
    """Size and mtime of local files: a cheap check that the source has not changed since ingest."""
    stats: list[dict[str, Any]] = []
    for f in files:
        if "://" in f:
            stats.append({"path": redact_url_credentials(f)})  # recorded in the manifest: no URL password
            continue
        st = os.stat(f)
        stats.append({"path": os.path.abspath(f), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return stats


def _column_digest(name: str, series: pd.Series) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(name.encode())
    h.update(str(series.dtype).encode())
    values = series.to_numpy() if series.dtype.kind in "biufcmM" else None
    if values is not None and values.dtype != object:
        h.update(np.ascontiguousarray(values).view(np.uint8).data)
    else:
        # strings/categories/nullable types: pandas' vectorised per-value hash, then the hash bytes
        h.update(pd.util.hash_array(series.astype(object).to_numpy(), categorize=True).view(np.uint8).data)
        h.update(series.isna().to_numpy().view(np.uint8).data)
    return h.digest()


def fingerprint(frame: pd.DataFrame) -> str:
    """Content hash over column names, dtypes and values in row order.

    It does not depend on file names or Parquet row-group layout. Columns are hashed in threads
    (hashlib releases the GIL on large buffers).
    """
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(lambda c: _column_digest(str(c), frame[c]), frame.columns))
    h = hashlib.blake2b(digest_size=16)
    h.update(str(len(frame)).encode())
    for d in digests:
        h.update(d)
    return h.hexdigest()


def _numeric_summary(values: np.ndarray, rows: np.ndarray | None) -> dict[str, Any]:
    """min/max/mean/std on the column's own dtype (no float64 copy of the table), NaN removed only if present."""
    if values.dtype.kind == "f":
        missing = np.isnan(values)
        nulls = int(missing.sum())
        finite = values[~missing] if nulls else values
        sample = values[rows] if rows is not None else values
        sample = sample[~np.isnan(sample)] if nulls else sample
    else:
        nulls, finite, sample = 0, values, values if rows is None else values[rows]
    entry: dict[str, Any] = {"nulls": nulls}
    if finite.size:
        with np.errstate(invalid="ignore", over="ignore"):  # ±inf values (validate reports them) give inf/NaN here
            q = np.quantile(sample, [0.01, 0.25, 0.5, 0.75, 0.99]) if sample.size else [np.nan] * 5
            entry.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean(dtype=np.float64)),
                         std=float(finite.std(dtype=np.float64)),
                         quantiles=dict(zip(["p01", "p25", "p50", "p75", "p99"], map(float, q))))
    return entry


def column_statistics(frame: pd.DataFrame, sample_rows: int = 100_000, seed: int = 0) -> dict:
    """Per-column statistics; quantiles and top values come from a seeded sample of large tables."""
    n = len(frame)
    rows = None if n <= sample_rows else np.sort(np.random.default_rng(seed).choice(n, sample_rows, replace=False))
    stats: dict[str, dict] = {}
    for column in frame.columns:
        series = frame[column]
        entry: dict[str, Any] = {"dtype": str(series.dtype), "count": n}
        if pd.api.types.is_bool_dtype(series):
            entry.update(nulls=int(series.isna().sum()), true_fraction=float(series.mean()) if n else None)
        elif pd.api.types.is_numeric_dtype(series):
            values = series.to_numpy(dtype=np.float64, na_value=np.nan) if series.hasnans and series.dtype.kind not in "f" \
                else series.to_numpy()
            entry.update(_numeric_summary(values, rows))
        elif pd.api.types.is_datetime64_any_dtype(series):
            entry.update(nulls=int(series.isna().sum()), min=str(series.min()), max=str(series.max()))
        else:
            counts = (series if rows is None else series.iloc[rows]).value_counts(dropna=True)
            entry.update(nulls=int(series.isna().sum()), distinct_in_sample=int(counts.size),
                         top={str(k): int(v) for k, v in counts.head(20).items()})
        stats[str(column)] = entry
    return {"rows": n, "columns": stats}
