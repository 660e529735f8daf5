"""Reading a Parquet table batch by batch, for tables larger than memory (`data.streaming`).

`ParquetSource` yields pandas frames of `data.stream_batch_rows` rows with the same dtypes in every batch
(an integer column that holds a null anywhere is float64 in all batches, as pandas reads it whole; a dictionary
column is read as its values, not as per-batch categories), `data.coerce` and `data.infinite` applied per batch.
`decide` says whether a run streams: `on`, `off`, or `auto` from the table's in-memory size against the memory
available now.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trainpipe.data.finite import apply_infinite_policy
from trainpipe.data.io import DataConfig, _format_of, apply_coercions, expand_paths
from trainpipe.errors import DataError

# auto streams when the table would take more than this share of available memory: the in-memory path holds the
# frame, its float32 matrix and a copy of each split at once, about 3x the table.
AUTO_MEMORY_SHARE = 0.3


def _open(path: str) -> Any:
    import pyarrow.parquet as pq

    if "://" in path:
        import fsspec

        return pq.ParquetFile(fsspec.open(path, "rb").open())
    # No pre-buffering of whole row groups (it pays off on object stores, not on local disks): measured on a
    # 400k-row x 41-column file, Arrow then held ~150 MiB more while iterating batches of 65,536 rows.
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)


def _metadata(path: str) -> Any:
    try:
        return _open(path).metadata
    except Exception as exc:  # pyarrow's ArrowInvalid for a corrupt file, OSError for an unreadable one
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"data.path: cannot read parquet file {path}: {detail}", key="data.path") from exc


class ParquetSource:
    """The Parquet files `data.path` names, read in batches; rows numbered in sorted file order."""

    def __init__(self, config: DataConfig):
        self.config = config
        self.files = expand_paths(config.path)
        for path in self.files:
            if _format_of(path, config.format) != "parquet":
                raise DataError(f"data.streaming: streaming reads Parquet files and {path} is CSV; convert it to "
                                "Parquet or set data.streaming: off", key="data.streaming")
        metas = [_metadata(path) for path in self.files]
        self.schema = metas[0].schema.to_arrow_schema()
        for path, meta in zip(self.files[1:], metas[1:]):
            other = meta.schema.to_arrow_schema()
            if other.names != self.schema.names or other.types != self.schema.types:
                raise DataError(f"data.path: the files do not share one schema: {path} differs from {self.files[0]}",
                                key="data.path")
        self.rows = sum(m.num_rows for m in metas)
        self.columns = [str(n) for n in self.schema.names]
        self.memory_bytes = sum(m.row_group(g).total_byte_size for m in metas for g in range(m.num_row_groups))
        self._floated = _ints_with_nulls(self.schema, metas)

    def frames(self, columns: list[str] | None = None, batch_rows: int | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
        """(position of the batch's first row, the batch) over every file; `columns`: read only these."""
        import pyarrow as pa

        size = batch_rows or self.config.stream_batch_rows
        wanted = None if columns is None else [c for c in self.columns if c in set(columns)]
        offset = 0
        for path in self.files:
            for batch in _open(path).iter_batches(batch_size=size, columns=wanted):
                for i, field in enumerate(batch.schema):
                    if pa.types.is_dictionary(field.type):
                        batch = batch.set_column(i, field.name, batch.column(i).dictionary_decode())
                frame = batch.to_pandas()
                for name in self._floated.intersection(frame.columns):
                    frame[name] = frame[name].astype(np.float64)
                coerce = {k: v for k, v in self.config.coerce.items() if k in frame.columns or wanted is None}
                frame = apply_coercions(frame, coerce)
                if self.config.infinite == "missing":
                    frame = apply_infinite_policy(frame, "missing", "data.path")
                yield offset, frame
                offset += len(frame)

    def empty_frame(self) -> pd.DataFrame:
        """No rows, every column with the dtype the batches have (for column checks)."""
        first = next(self.frames(batch_rows=1_000), None)
        return first[1].iloc[:0] if first is not None else pd.DataFrame(columns=self.columns)


def rows_at(batches: Iterable[tuple[int, pd.DataFrame]], positions: np.ndarray | None) -> pd.DataFrame:
    """The rows at the sorted `positions` (None: every row) of the table that `batches` ((position of the batch's
    first row, the batch) in order) make up, holding one batch besides the rows taken: what `frame.iloc[positions]`
    of the whole table gives (with a fresh index), e.g. drift's seeded sample of a table larger than memory."""
    taken, empty = [], None
    for offset, frame in batches:
        if empty is None:
            empty = frame.iloc[:0]
        if positions is None:
            taken.append(frame)
            continue
        lo, hi = np.searchsorted(positions, [offset, offset + len(frame)])
        if hi > lo:
            taken.append(frame.iloc[positions[lo:hi] - offset])
        if hi == len(positions):  # every wanted row taken: the rest of the table is not read
            break
    if taken:
        return pd.concat(taken, ignore_index=True)
    return empty if empty is not None else pd.DataFrame()


def _ints_with_nulls(schema: Any, metas: list) -> set[str]:
    """Integer columns with a null in any row group (or without statistics): float64 in every batch, as a whole-table
    read gives them, so a batch without nulls does not get another dtype."""
    import pyarrow as pa

    out = set()
    for i, field in enumerate(schema):
        if not pa.types.is_integer(field.type):
            continue
        for meta in metas:
            index = meta.schema.names.index(field.name) if field.name in meta.schema.names else i
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(index).statistics
                if stats is None or not stats.has_null_count or stats.null_count > 0:
                    out.add(str(field.name))
    return out


@dataclass(frozen=True)
class Decision:
    stream: bool
    reason: str  # one line for the ingest summary
    memory_bytes: int = 0
    warn: bool = False  # auto kept a table that may not fit in memory (a blocker): ingest warns


def available_memory() -> int:
    """Memory available now, bounded by a cgroup (container) limit when there is one."""
    import psutil

    available = int(psutil.virtual_memory().available)
    try:
        text = open("/sys/fs/cgroup/memory.max").read().strip()
        used = int(open("/sys/fs/cgroup/memory.current").read().strip())
        if text != "max":
            available = min(available, max(int(text) - used, 0))
    except (OSError, ValueError):
        pass
    return available


def decide(config: DataConfig, blockers: list[str]) -> Decision:
    """Whether this run streams. `blockers`: why the rest of the config needs the table in memory (auto then stays in
    memory and says why; `on` with a blocker never gets here: the config refuses it)."""
    if config.streaming == "off":
        return Decision(False, "data.streaming: off")
    if config.streaming == "on":
        return Decision(True, "data.streaming: on", ParquetSource(config).memory_bytes)
    files = expand_paths(config.path)
    if any(_format_of(f, config.format) != "parquet" for f in files):
        return Decision(False, "data.streaming: auto: CSV is read whole")
    size, limit = ParquetSource(config).memory_bytes, available_memory()
    too_big = size > AUTO_MEMORY_SHARE * limit
    gib = f"{size / 2**30:.2f} GiB in memory, {limit / 2**30:.1f} GiB available"
    if too_big and blockers:
        return Decision(False, f"data.streaming: auto: the table ({gib}) may not fit, but {blockers[0]}; loading it "
                        "whole", size, warn=True)
    return Decision(too_big, f"data.streaming: auto: {'streaming' if too_big else 'in memory'} ({gib})", size)


def streaming_blockers(task: str, model_streams: bool, model_type: str, tuning: bool, split_strategy: str,
                       drift_max_rows: int | None = 200_000) -> list[str]:
    """What in the config needs the table in memory: for `on`, config errors; for `auto`, reasons not to stream."""
    problems = []
    if task == "ranking":
        problems.append("data.streaming: task ranking needs its interactions in memory; set data.streaming: off")
    if not model_streams:
        problems.append(f"data.streaming: model.type {model_type} needs the table in memory; xgboost and torch_mlp "
                        "train from streamed batches (or set data.streaming: off)")
    if tuning:
        problems.append("data.streaming: tuning needs the features in memory; set tuning.enabled: false or "
                        "data.streaming: off")
    if split_strategy in ("stratified", "time"):
        problems.append(f"split.strategy: {split_strategy} needs the whole table at once; streaming assigns rows by a "
                        "seeded hash (random, or group); use split.strategy: auto, random or group, or "
                        "data.streaming: off")
    if drift_max_rows is None:  # register summarises the training rows for every version, drift the whole table
        problems.append("drift.max_rows: null summarises every row in memory (the drift check and each registered "
                        "version's drift reference); set a number of rows (default 200000) or data.streaming: off")
    return problems
