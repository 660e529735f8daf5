"""A stage's .npy outputs written by a background thread, so the writes overlap the next stage.

Why: on this machine, once ~150 MB of writes (a run's, or an earlier run's) are still dirty in the page cache,
the kernel paces further writes at ~500 MB/s: the features stage of a 1M × 32 table spent 0.35-0.45 s of its
0.7 s in np.save while training waited for it. A thread paced in the kernel holds no GIL and burns little CPU,
so the writes move beside the next stage: features took 0.17-0.43 s instead of 0.21-0.72 s, train ~0.15 s more
(the writeback beside xgboost), a whole run's median 10.02 against 10.09 s. No library does this with the
guarantees below, hence this small module.

What stays exact:
- each file's size and SHA-256 come from the array in memory before the stage commits (its manifest records
  them as for any other file; `cache.reuse` checks them);
- the stage's process gives later stages the array itself (`StageContext.arrays`), never a half-written file;
  a reader by path (`StageContext.upstream`) waits for the stage's files first;
- every write of a stage ends before the next stage commits, before the run's lock is released and before the
  process exits (the pool's thread is joined at interpreter exit);
- a process killed mid-write leaves a file whose size or hash does not match its manifest: a resume or another
  run recomputes the stage rather than reusing it.
"""

from __future__ import annotations

import hashlib
import io
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainpipe.errors import StorageError


@dataclass
class PendingFile:
    relative: str  # within the stage folder
    size: int
    digest: Future[str]
    written: Future[None]


def npy_header(array: np.ndarray) -> bytes:
    """The .npy header np.save would write for `array` (format 1.0; 2.0 for a header over 64 KiB)."""
    header = io.BytesIO()
    fields = np.lib.format.header_data_from_array_1_0(array)
    try:
        np.lib.format.write_array_header_1_0(header, fields)
    except ValueError:
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, fields)
    return header.getvalue()


def _contents(array: np.ndarray) -> tuple[bytes, memoryview]:
    """Header and data bytes in the order the header declares (C, or Fortran for F-ordered arrays)."""
    if array.dtype.hasobject:
        raise ValueError("object arrays are pickled by np.save; they are not written in the background")
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)
    data = array.T if array.flags.f_contiguous and not array.flags.c_contiguous else array  # C-contiguous now
    flat: Any = data.reshape(-1).view(np.uint8)  # numpy's stubs do not say it is a Buffer
    return npy_header(array), memoryview(flat)


class ArrayWrites:
    """The run's background writer: one thread hashes, another writes, each in the order the files were given
    (the hashes, which the commit waits for, never queue behind paced writes)."""

    def __init__(self) -> None:
        self._hashing: ThreadPoolExecutor | None = None
        self._writing: ThreadPoolExecutor | None = None
        self._pending: dict[str, list[PendingFile]] = {}
        self._lock = threading.Lock()

    def save(self, stage: str, folder: Path, name: str, array: np.ndarray) -> None:
        """`folder/name` (an .npy file) created now, its contents hashed and written by the writer thread."""
        header, data = _contents(array)
        handle = open(folder / name, "wb")  # noqa: SIM115  # closed by _write; created now, before the folder is renamed
        if self._hashing is None or self._writing is None:
            self._hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainpipe-array-hashes")
            self._writing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainpipe-array-writes")
        digest = self._hashing.submit(_digest, header, data)
        written = self._writing.submit(_write, handle, header, data)
        with self._lock:
            self._pending.setdefault(stage, []).append(PendingFile(name, len(header) + data.nbytes, digest, written))

    def files(self, stage: str) -> dict[str, tuple[int, str]]:
        """{relative path: (size, sha256)} of the stage's pending files (waits for the hashes, not the writes)."""
        with self._lock:
            pending = list(self._pending.get(stage, ()))
        return {p.relative: (p.size, p.digest.result()) for p in pending}

    def wait(self, stage: str | None = None, *, other_than: str | None = None, raise_errors: bool = True) -> None:
        """Until the files of `stage` (all stages: None; all but `other_than`) are on disk. A failed write raises
        StorageError naming the file, once."""
        with self._lock:
            chosen = [s for s in self._pending if (stage is None or s == stage) and s != other_than]
            batches = {s: self._pending.pop(s) for s in chosen}
        failure: BaseException | None = None
        for stage_name, pending in batches.items():
            for p in pending:
                try:
                    p.written.result()
                except BaseException as exc:  # noqa: BLE001  # reported below, after every write has ended
                    failure = failure or StorageError(f"stage {stage_name}: writing {p.relative} failed: {exc}",
                                                    key="store")
        if failure is not None and raise_errors:
            raise failure

    def pending(self, stage: str) -> bool:
        with self._lock:
            return bool(self._pending.get(stage))


def _digest(header: bytes, data: memoryview) -> str:
    digest = hashlib.sha256(header)
    digest.update(data)  # releases the GIL for large buffers
    return digest.hexdigest()


def _write(handle: io.BufferedWriter, header: bytes, data: memoryview) -> None:
    with handle:
        handle.write(header)
        handle.write(data)
