"""Batch sources (tensors in memory, or Parquet row groups streamed) and the cursor that resumes them.

Batches are index-selects on tensors: one randperm per epoch, no per-row Python. A per-row Dataset +
DataLoader spends most of an epoch in Python (~68k rows/s here against ~173k for slicing tensors,
docs/FACTS), so the loop only ever sees whole-batch tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from os import PathLike
from typing import Any, Protocol

import numpy as np
import torch

from trainpipe.engine.state import AttributeState

Batch = tuple[torch.Tensor, ...]  # (features..., target): one tensor per model input, the target last


class BatchSource(Protocol):
    """Rows the loop trains on. A source holds no position: where training is lives in an `EpochCursor`,
    and the epoch's order is a pure function of (seed, epoch), so any source resumes by regenerating it."""

    rows: int

    def permutation(self, seed: int, epoch: int) -> torch.Tensor: ...

    def windows(self, seed: int, epoch: int, order: torch.Tensor, start: int, window: int) -> Iterator[Batch]: ...

    def sequential(self, batch_size: int) -> Iterator[Batch]: ...

    def to(self, device: torch.device) -> BatchSource: ...


class EpochCursor(AttributeState):
    """The loader position a checkpoint holds: the epoch, the rows of it already trained on, and its order
    (a row permutation, or a row-group order for Parquet). Both batch sources resume through it."""

    STATE = ("epoch", "pos", "order")

    def __init__(self) -> None:
        self.epoch, self.pos = 0, 0
        self.order: torch.Tensor | None = None

    def batches(self, source: BatchSource, seed: int, window: int) -> Iterator[Batch]:
        """This epoch's remaining windows of `window` rows, from the saved position."""
        if self.order is None:
            self.order = source.permutation(seed, self.epoch)
        return source.windows(seed, self.epoch, self.order, self.pos, window)

    def advance(self, rows: int) -> None:
        self.pos += rows

    def next_epoch(self) -> None:
        self.epoch, self.pos, self.order = self.epoch + 1, 0, None


def as_tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """C-ordered, writable copy when needed: pandas 3 can hand back read-only column-major arrays."""
    array = np.asarray(array)
    if not array.flags.c_contiguous or not array.flags.writeable:
        array = np.array(array, order="C", copy=True)
    return torch.from_numpy(array).to(dtype)


class TensorBatches:
    """Aligned tensors (features..., target) sliced into batches of rows."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors = tensors
        self.rows = int(tensors[0].shape[0])
        if any(int(t.shape[0]) != self.rows for t in tensors):
            raise ValueError("all tensors need the same number of rows")

    def permutation(self, seed: int, epoch: int) -> torch.Tensor:
        """The epoch's row order: a pure function of (seed, epoch), so a resumed run shuffles identically."""
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        return torch.randperm(self.rows, generator=generator)

    def take(self, index: torch.Tensor) -> Batch:
        return tuple(t.index_select(0, index.to(t.device)) for t in self.tensors)

    def windows(self, seed: int, epoch: int, order: torch.Tensor, start: int, window: int) -> Iterator[Batch]:
        """The epoch's batches of `window` rows in `order`, from row position `start` (a resume point)."""
        for pos in range(start, self.rows, window):
            yield self.take(order[pos:pos + window])

    def sequential(self, batch_size: int) -> Iterator[Batch]:
        """Contiguous slices (views, no copy) for evaluation and prediction."""
        for start in range(0, self.rows, batch_size):
            yield tuple(t[start:start + batch_size] for t in self.tensors)

    def to(self, device: torch.device) -> TensorBatches:
        return self if device.type == "cpu" else TensorBatches(*(t.to(device) for t in self.tensors))


class ParquetBatches:
    """Rows streamed from a Parquet file one row group at a time, for data larger than memory.

    Each epoch visits the row groups in a seeded random order and shuffles within a buffer of about
    `buffer_rows` rows, so memory is one buffer, not the table. The order is a pure function of
    (seed, epoch), so a resumed epoch regenerates it and skips the windows already trained on: its resume
    state is the `EpochCursor` the Trainer checkpoints, like `TensorBatches`'.
    `groups` are the tensors to build per batch: (column names, dtype), the target last.
    """

    def __init__(self, path: str | PathLike[str], groups: list[tuple[list[str], torch.dtype]],
                 buffer_rows: int = 65536) -> None:
        import pyarrow.parquet as pq

        self.path, self.groups, self.buffer_rows = path, groups, buffer_rows
        meta = pq.ParquetFile(path).metadata
        self.rows, self.row_groups = meta.num_rows, meta.num_row_groups

    def _read(self, file: Any, group: int) -> Batch:
        """One row group as (feature matrices..., target vector)."""
        table = file.read_row_group(group, columns=[c for cols, _ in self.groups for c in cols])
        *features, (target, target_dtype) = self.groups
        out = [as_tensor(np.column_stack([table.column(c).to_numpy() for c in columns]) if columns
                         else np.empty((table.num_rows, 0), dtype=np.float32), dtype) for columns, dtype in features]
        return (*out, as_tensor(table.column(target[0]).to_numpy(), target_dtype))

    def permutation(self, seed: int, epoch: int) -> torch.Tensor:
        """The epoch's row-group order (what a checkpoint stores as the batch order)."""
        return torch.randperm(self.row_groups, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))

    def windows(self, seed: int, epoch: int, order: torch.Tensor, start: int, window: int) -> Iterator[Batch]:
        import pyarrow.parquet as pq

        file = pq.ParquetFile(self.path)
        shuffle = torch.Generator().manual_seed((seed * 100_003 + epoch) * 7 + 1)
        pending: list[Batch] = []
        pos = 0
        groups = [int(g) for g in order]
        for i, group in enumerate(groups):
            pending.append(self._read(file, group))
            if sum(len(p[-1]) for p in pending) < self.buffer_rows and i < len(groups) - 1:
                continue
            buffer = tuple(torch.cat(parts) for parts in zip(*pending))
            perm = torch.randperm(len(buffer[-1]), generator=shuffle)
            buffer = tuple(t.index_select(0, perm) for t in buffer)
            usable = len(buffer[-1]) if i == len(groups) - 1 else len(buffer[-1]) // window * window
            for first in range(0, usable, window):
                if pos >= start:
                    yield tuple(t[first:first + window] for t in buffer)
                pos += len(buffer[-1][first:first + window])
            pending = [tuple(t[usable:] for t in buffer)] if usable < len(buffer[-1]) else []

    def sequential(self, batch_size: int) -> Iterator[Batch]:
        import pyarrow.parquet as pq

        file = pq.ParquetFile(self.path)
        for group in range(self.row_groups):
            tensors = self._read(file, group)
            for first in range(0, len(tensors[-1]), batch_size):
                yield tuple(t[first:first + batch_size] for t in tensors)

    def to(self, device: torch.device) -> ParquetBatches:
        return self  # batches are moved to the device one at a time by the loop
