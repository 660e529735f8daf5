"""Batch inference with a packaged model: resolve, verify, validate the input, stream, write Parquet.

The input is checked once against the columns and kinds the model was trained on (one line naming
the column, exit 2), then read in chunks (Parquet row groups, CSV chunks) and written chunk by chunk,
so memory stays flat on large files. Chunks go straight to the unwrapped PackagedModel: MLflow's
per-call schema enforcement would repeat the check we already made on every chunk.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from trainpipe.errors import ConfigError, DataError, RegistryError
from trainpipe.files import atomic_output

if TYPE_CHECKING:
    from trainpipe.store import Store

NUMERIC = ("double", "long", "float", "integer")


# A bare word that may name a run folder (issue 10's documented run-id pattern). Anything else (a path,
# NAME@alias, NAME/3) is never looked up under <store>/runs, so it can never be read as a run id.
RUN_ID_LIKE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# `NAME/3` without `models:/`: the registry's short form, tried when no folder of that name exists.
SHORT_REGISTRY_REF = re.compile(r"[^/:@]+/\d+")
MODEL_URI_FORMS = ("models:/NAME@ALIAS, models:/NAME/VERSION, runs:/MLFLOW_RUN_ID/model, a trainpipe run id or a "
                   "packaged model folder")


def resolve(ref: str, store: Store, tracking_uri: str | None = None) -> tuple[Path, str]:
    """MODEL_URI -> (verified package folder, label). One reading per form, and the error says which was tried:
    `models:/...`, `runs:/...` -> the registry; any other `scheme://` -> refused; a bare word naming a run in
    the store -> that run; an existing folder -> a package (or a run folder); a path to nothing -> "no such
    folder"; else `NAME`, `NAME@alias` or `NAME/3` in the registry."""
    if ref.startswith(("models:/", "runs:/")):
        return _from_registry(ref, store, tracking_uri)
    if "://" in ref:
        raise RegistryError(f"model {ref!r}: cannot load a model from {ref.split('://', 1)[0]}:// URIs; give "
                            f"{MODEL_URI_FORMS} (download the package folder first)", key="model")
    if RUN_ID_LIKE.fullmatch(ref) and (store.runs_dir / ref).is_dir():
        return _from_run_folder(store.runs_dir / ref, f"run {ref}", store, tracking_uri)
    folder = Path(ref).expanduser()
    if folder.is_dir():
        return _from_folder(folder, ref, store, tracking_uri)
    if folder.exists():
        raise RegistryError(f"model {ref!r}: is a file; give the packaged model's folder (the one holding MLmodel)",
                            key="model")
    if ref.startswith((".", "~")) or (os.sep in ref and not SHORT_REGISTRY_REF.fullmatch(ref)):
        raise RegistryError(f"model {ref!r}: no such folder (read as a path to a packaged model)", key="model")
    if not RUN_ID_LIKE.fullmatch(ref):  # NAME@alias or NAME/3: only the registry can mean it
        return _from_registry(ref, store, tracking_uri)
    return _from_registry(ref, store, tracking_uri, tried=f"model {ref!r}: not a run in {store.runs_dir}, not a folder")


def _from_run_folder(run_dir: Path, label: str, store: Store, tracking_uri: str | None) -> tuple[Path, str]:
    record_file = run_dir / "register" / "registered.json"
    if not record_file.exists():
        what = "no packaged model (its register stage has not completed)" if (run_dir / "run.json").exists() else \
            f"folder {run_dir} has no run.json: not a trainpipe run, or one whose creation was interrupted"
        raise RegistryError(f"{label}: {what}", key="model")
    path = run_dir / "register" / "model"
    in_store = run_dir.resolve().parent == store.runs_dir.resolve()
    verify_run_package(path, run_dir.name if in_store else None, store, tracking_uri, f"of {label}")
    return path, label


def _from_folder(folder: Path, ref: str, store: Store, tracking_uri: str | None) -> tuple[Path, str]:
    """A package folder (verified against the registry when it is a run's package, else the registered.json next
    to it), or a run folder given by path."""
    if (folder / "MLmodel").exists():
        resolved = folder.resolve()
        in_run = resolved.parent.name == "register" and resolved.parent.parent.parent == store.runs_dir.resolve()
        verify_run_package(folder, resolved.parent.parent.name if in_run else None, store, tracking_uri, str(ref))
        return folder, str(ref)
    if (folder / "run.json").exists():
        return _from_run_folder(folder, f"run folder {ref}", store, tracking_uri)
    raise RegistryError(f"model {ref!r}: this folder is neither a packaged model (no MLmodel file) nor a trainpipe "
                        "run folder (no run.json)", key="model")


def _from_registry(ref: str, store: Store, tracking_uri: str | None, tried: str | None = None) -> tuple[Path, str]:
    from trainpipe.registry.client import Registry
    from trainpipe.tracking.config import TrackingConfig

    if tracking_uri is None and not (store.root / "mlflow.db").exists():
        head = f"{tried}, and" if tried else f"model {ref!r}:"
        raise RegistryError(f"{head} no MLflow store at {store.root} to look it up in (pass --store or --tracking-uri)",
                            key="model")
    registry = Registry(store, TrackingConfig(uri=tracking_uri))
    if ref.startswith("runs:/"):
        return registry.verified_run_path(ref), ref
    if tried and not registry.exists(ref):
        raise RegistryError(f"{tried}, and no registered model of that name in {registry.tracker.uri}", key="model")
    path, mv = registry.verified_path(ref)
    return path, f"{mv.name}/{mv.version}"


def verify_run_package(path: Path, run_id: str | None, store: Store, tracking_uri: str | None, label: str) -> None:
    """A run folder's package: checked against the SHA-256 the registry holds for the version that run
    registered. Only when there is no registry (the store's own, or --tracking-uri) or the run registered
    nothing does the `registered.json` next to the package give the expected value: a file that whoever
    edits the package can edit too, so it catches accidents, not tampering."""
    from trainpipe.registry.client import SHA_TAG, check_sha

    if run_id is not None and (tracking_uri is not None or (store.root / "mlflow.db").exists()):
        from trainpipe.registry.packaging import tree_sha256
        from trainpipe.registry.client import Registry
        from trainpipe.tracking.config import TrackingConfig

        versions = Registry(store, TrackingConfig(uri=tracking_uri)).run_versions(run_id)
        if versions:
            expected = [mv.tags.get(SHA_TAG) for mv in versions]
            if tree_sha256(path) not in expected:  # older stores may hold several versions of one run
                check_sha(path, expected[0], f"{label} (registered as {versions[0].name}/{versions[0].version})")
            return
    record_file = path.parent / "registered.json"
    check_sha(path, json.loads(record_file.read_text()).get("sha256") if record_file.exists() else None, label)


def load_packaged(path: Path) -> Any:
    """The PackagedModel inside the pyfunc (load_context already run)."""
    import warnings

    import mlflow.pyfunc

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.pyfunc.load_model(str(path)).unwrap_python_model()


def check_columns(frame: pd.DataFrame, meta: dict, source: str) -> None:
    missing = [c["name"] for c in meta["inputs"] if c["name"] not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(map(repr, missing))} that the model was trained on",
                        key=f"column {missing[0]}")
    for spec in meta["inputs"]:
        series = frame[spec["name"]]
        if spec["kind"] in NUMERIC and not (pd.api.types.is_numeric_dtype(series) or series.isna().all()):
            example = series.dropna().astype(str).iloc[0]
            raise DataError(f"{source}: column {spec['name']!r} should hold numbers ({spec['kind']}) but holds text "
                            f"such as {example!r}", key=f"column {spec['name']}")
        if spec["kind"] == "datetime" and not pd.api.types.is_datetime64_any_dtype(series):
            from trainpipe.data.datetimes import as_datetimes

            unparsed = series.notna() & as_datetimes(series).isna()
            if unparsed.any():
                raise DataError(f"{source}: column {spec['name']!r} should hold dates/times but holds "
                                f"{str(series[unparsed].iloc[0])!r}", key=f"column {spec['name']}")
        if spec["kind"] == "boolean" and not (pd.api.types.is_bool_dtype(series) or series.isna().all()
                                              or set(series.dropna().unique()) <= {0, 1}):
            raise DataError(f"{source}: column {spec['name']!r} should hold true/false values", key=f"column {spec['name']}")
    if meta.get("infinite", "error") == "error":  # `missing`: the packaged model makes them NaN (packaging.py)
        from trainpipe.data.finite import apply_infinite_policy

        apply_infinite_policy(frame, "error", source, [c["name"] for c in meta["inputs"] if c["kind"] in NUMERIC])


def used_columns(meta: dict) -> set[str]:
    """The columns predict reads: the model's inputs and the id column. Others (the target, notes) are never decoded."""
    return {c["name"] for c in meta["inputs"]} | set(meta["input_columns"]) | ({meta["id_column"]} if meta.get("id_column")
                                                                                 else set())


def text_columns(schema: Any, meta: dict) -> list[str]:
    """The model's text inputs stored as Parquet strings: read as dictionaries (pandas categoricals), so a chunk
    decodes each distinct value once instead of once per row, and the category lookup (data/categories.py)
    hashes the distinct values only. The same matrix either way (tested)."""
    import pyarrow as pa

    stored = {field.name: field.type for field in schema}
    return [c["name"] for c in meta["inputs"] if c["kind"] == "string" and c["name"] in stored
            and (pa.types.is_string(stored[c["name"]]) or pa.types.is_large_string(stored[c["name"]]))]


def chunks(data: str, meta: dict, rows: int) -> Iterator[tuple[pd.DataFrame, object]]:
    """(rows as pandas, the same rows as an Arrow table or None): Parquet ids pass through without pandas. Only
    `used_columns` are read (text inputs as dictionaries: `text_columns`); a missing one is left to check_columns
    to name."""
    import pyarrow as pa

    path = Path(data)
    if not path.is_file():
        raise DataError(f"{data}: {'is a folder, not a file' if path.is_dir() else 'file not found'}", key="data")
    parquet = path.suffix in (".parquet", ".pq")
    if not parquet and not (path.suffix in (".csv", ".txt") or path.name.endswith(".csv.gz")):
        raise DataError(f"{data}: expected a .parquet or .csv file", key="data")
    try:
        if parquet:
            import pyarrow.parquet as pq

            source = pq.ParquetFile(path, read_dictionary=text_columns(pq.read_schema(path), meta))
            wanted = used_columns(meta)
            used = [name for name in source.schema_arrow.names if name in wanted]
            for batch in source.iter_batches(batch_size=rows, columns=used):
                yield batch.to_pandas(), pa.Table.from_batches([batch])
        else:
            text = {c["name"]: "string" for c in meta["inputs"] if c["kind"] == "string"}
            wanted = used_columns(meta)
            for frame in pd.read_csv(path, chunksize=rows, dtype=text, usecols=lambda name: name in wanted):
                yield frame, None
    except (ValueError, OSError, pa.ArrowException) as exc:  # corrupt Parquet, ragged or undecodable CSV
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        detail = lines[-1] if isinstance(exc, pd.errors.ParserError) else lines[0]  # pandas ends with the line number
        raise DataError(f"{data}: cannot read it as {'Parquet' if parquet else 'CSV'}: {detail}", key="data") from None


def read_ahead(items: Iterator[Any]) -> Iterator[Any]:
    """The items of `items`, the next one read in a worker thread while the caller works on this one.

    Parquet decoding and CSV parsing release the GIL for most of their work, and so does the model, so reading
    chunk i+1 overlaps predicting chunk i (with the write of chunk i-1 in predict_file: a three-stage pipeline
    that no library here provides for a pyfunc). One chunk ahead at most: memory stays bounded."""
    from concurrent.futures import ThreadPoolExecutor

    done = object()
    with ThreadPoolExecutor(1, thread_name_prefix="predict-read") as pool:
        pending = pool.submit(next, items, done)
        while True:
            item = pending.result()  # re-raises a read error (DataError) in the caller's thread
            if item is done:
                return
            pending = pool.submit(next, items, done)
            yield item


def prediction_table(meta: dict, scores: np.ndarray, frame: pd.DataFrame, source: Any) -> Any:
    """The output columns as Arrow arrays built from the scores (labels dictionary-encoded: cheap to write)."""
    import pyarrow as pa

    from trainpipe.registry.packaging import class_codes

    columns = {}
    id_column = meta.get("id_column")
    if id_column and id_column in frame.columns:
        columns[id_column] = source.column(id_column) if source is not None else pa.array(frame[id_column], from_pandas=True)
    if meta["task"] == "regression":
        columns["prediction"] = pa.array(scores)
        return pa.table(columns)
    classes = [str(c) for c in meta["classes"]]
    codes = class_codes(scores, meta).astype(np.int32)
    columns["prediction"] = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(classes))
    for i, label in enumerate(meta["classes"]):
        columns[f"proba_{label}"] = pa.array(scores[:, i])
    return pa.table(columns)


def writer_options(schema: Any) -> dict[str, Any]:
    """Dictionary pages only for the labels: trying them on unique ids and floats costs 2.5x. Scores (float64 holding
    float32 values) byte-stream-split: each byte position of the values stored together, so the always-zero low
    mantissa bytes compress away; on 1M torch_mlp rows 12.8 against 16.8 MB, written in 0.06 against 0.08 s (snappy
    either way, which every Parquet reader reads; the encoding is in the format since 2.8)."""
    import pyarrow as pa

    floats = [field.name for field in schema if pa.types.is_floating(field.type)]
    labels = [field.name for field in schema if field.name == "prediction" and field.name not in floats]
    return {"use_dictionary": labels, "column_encoding": dict.fromkeys(floats, "BYTE_STREAM_SPLIT")}


def predict_file(ref: str, data: str, out: str, store: Store, tracking_uri: str | None = None,
                 chunk_rows: int = 200_000) -> dict:
    import pyarrow.parquet as pq

    if chunk_rows < 1:
        raise ConfigError(f"--chunk-rows: must be at least 1 (got {chunk_rows})", key="--chunk-rows")
    out_path = Path(out)
    with atomic_output(out_path, "predictions.parquet") as tmp:  # a bad --out is refused before the model loads
        path, label = resolve(ref, store, tracking_uri)
        model = load_packaged(path)
        started, total, writer = time.perf_counter(), 0, None
        from concurrent.futures import Future, ThreadPoolExecutor

        writing: Future | None = None  # the previous chunk's write, overlapping this chunk's prediction
        with ThreadPoolExecutor(1, thread_name_prefix="predict-write") as pool:
            try:
                for frame, source in read_ahead(chunks(data, model.meta, chunk_rows)):
                    check_columns(frame, model.meta, data)
                    table = prediction_table(model.meta, model.scores(frame), frame, source)
                    if writer is None:
                        writer = pq.ParquetWriter(tmp, table.schema, **writer_options(table.schema))
                    if writing is not None:
                        writing.result()  # at most one chunk waits to be written: memory stays two chunks
                    writing = pool.submit(writer.write_table, table)
                    total += len(frame)
                if writing is not None:
                    writing.result()
            finally:
                if writing is not None and not writing.done():
                    writing.exception()  # an error elsewhere: let the write end before the file is closed
                if writer is not None:
                    writer.close()
        if writer is None:
            raise DataError(f"{data}: no rows to predict", key="data")
    seconds = time.perf_counter() - started
    return {"model": label, "package": str(path), "data": data, "out": str(out_path), "rows": total,
            "seconds": round(seconds, 3), "rows_per_s": round(total / seconds, 1) if seconds else None,
            "columns": [c for c in pq.read_schema(out_path).names]}


def scores_of(result: pd.DataFrame, meta: dict) -> np.ndarray:
    """The probability matrix (or values) from a prediction frame, in the model's class order."""
    if meta["task"] == "regression":
        return result["prediction"].to_numpy(dtype=np.float64)
    return result[[f"proba_{c}" for c in meta["classes"]]].to_numpy(dtype=np.float64)
