"""The features' .npy files written in the background: the same bytes as np.save, hashes known before the write
ends, readers by path wait for whole files, and a failed write is reported with the file's name."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from trainpipe.errors import StorageError
from trainpipe.hashing import file_digest
from trainpipe.stages.array_writes import ArrayWrites
from trainpipe.stages.context import StageContext

ARRAYS = {"c_order": np.random.default_rng(0).normal(size=(1000, 7)).astype(np.float32),
          "f_order": np.asfortranarray(np.random.default_rng(1).normal(size=(500, 3))),
          "strided": np.arange(60, dtype=np.int64).reshape(6, 10)[:, ::3],
          "labels": np.array([0, 1, 1, 0], dtype=np.int8), "empty": np.zeros((0, 4), dtype=np.float32)}


def test_background_files_are_byte_identical_to_np_save_with_their_hashes_known_in_advance(tmp_path):
    writes = ArrayWrites()
    for name, array in ARRAYS.items():
        writes.save("features", tmp_path, f"{name}.npy", array)
    expected = writes.files("features")
    writes.wait("features")
    for name, array in ARRAYS.items():
        buffer = io.BytesIO()
        np.save(buffer, array)
        path = tmp_path / f"{name}.npy"
        assert path.read_bytes() == buffer.getvalue()
        assert expected[f"{name}.npy"] == (path.stat().st_size, file_digest(path))
        np.testing.assert_array_equal(np.load(path), array)
    assert not writes.pending("features")


def test_a_failed_write_is_reported_once_with_the_stage_and_file(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    (tmp_path / "X_train.npy").symlink_to("/dev/full")  # every write fails with ENOSPC
    writes = ArrayWrites()
    writes.save("features", tmp_path, "X_train.npy", ARRAYS["c_order"])
    with pytest.raises(StorageError, match="stage features: writing X_train.npy failed"):
        writes.wait()
    writes.wait()  # reported once: nothing pending any more


def test_later_stages_get_the_saved_arrays_read_only_and_readers_by_path_wait_for_the_files(tmp_path):
    writes, memo = ArrayWrites(), {}
    stage_dir = tmp_path / "features"
    stage_dir.mkdir()
    features = StageContext("r1", tmp_path, stage_dir, None, None, None, memo, name="features", writes=writes)  # type: ignore[arg-type]
    features.save_array("X_train", ARRAYS["c_order"])
    train = StageContext("r1", tmp_path, tmp_path / ".train.tmp", None, None, None, memo, name="train", writes=writes)  # type: ignore[arg-type]
    held = train.arrays("features", ["X_train"])["X_train"]
    assert not held.flags.writeable and np.shares_memory(held, ARRAYS["c_order"])
    folder = train.upstream("features")  # waits: the file is whole when the path is handed out
    assert not writes.pending("features")
    np.testing.assert_array_equal(np.load(folder / "X_train.npy"), ARRAYS["c_order"])
    memo.clear()
    loaded = train.arrays("features", ["X_train"])["X_train"]  # not held any more: read from the file
    assert loaded.flags.writeable and not np.shares_memory(loaded, ARRAYS["c_order"])


def test_without_a_writer_arrays_are_saved_at_once(tmp_path):
    ctx = StageContext("r1", tmp_path, tmp_path, None, None, None, {}, name="features")  # type: ignore[arg-type]
    ctx.save_array("y_test", ARRAYS["labels"])
    np.testing.assert_array_equal(np.load(tmp_path / "y_test.npy"), ARRAYS["labels"])
    assert not ctx.memo
