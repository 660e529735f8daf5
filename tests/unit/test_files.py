"""Atomic writes: concurrent writers of one name, failures, permissions."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from trainpipe import files
from trainpipe.pipeline.run_folder import write_json


def test_concurrent_writers_of_one_name_never_fail_and_leave_one_complete_file(tmp_path):
    """What two runs finishing one stage at once do to its cache index entry."""
    target = tmp_path / "entry.json"
    docs = [{"writer": i, "payload": "x" * 50_000} for i in range(8)]

    def write_many(doc):
        for _ in range(100):
            write_json(target, doc)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write_many, docs))  # raises here if one writer renamed another's temporary file away
    assert json.loads(target.read_text()) in docs
    assert [p.name for p in tmp_path.iterdir()] == ["entry.json"]


def test_a_failed_write_leaves_the_target_as_it_was_and_no_temporary_file(tmp_path):
    target = tmp_path / "out.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError), files.replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_written_files_keep_the_umask_permissions_not_mkstemps_0600(tmp_path):
    umask = os.umask(0o022)
    try:
        files.write_text(tmp_path / "run.json", "{}", durable=True)
    finally:
        os.umask(umask)
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o644
