"""Checkpoint files: verified on read, broken ones skipped, another config's refused, last N + best kept."""

from __future__ import annotations

import logging

import pytest

import torch as torch

from trainpipe.engine.checkpoint import CheckpointMismatch, CheckpointStore
from trainpipe.engine.state import RngBundle


def state(step: int) -> dict:
    return {"weights": torch.full((3,), float(step)), "rng": RngBundle().state_dict(), "history": {"loss": [0.5, 0.25]}}


def test_round_trip_restores_values_and_rng(tmp_path):
    store = CheckpointStore(tmp_path, "h1")
    store.save(state(4), 4, best_step=None)
    expected = torch.rand(5)
    loaded = store.latest()
    assert loaded["step"] == 4 and torch.equal(loaded["weights"], torch.full((3,), 4.0))
    RngBundle().load_state_dict(loaded["rng"])  # the RNG state captured before `expected` was drawn
    assert torch.equal(torch.rand(5), expected)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupted_newest_is_skipped_with_a_warning(tmp_path, caplog, damage):
    store = CheckpointStore(tmp_path, "h1", keep_last=3)
    for step in (1, 2, 3):
        store.save(state(step), step, best_step=None)
    blob = store.path(3).read_bytes()
    store.path(3).write_bytes(blob[: len(blob) // 2] if damage == "truncate" else blob[:-5] + b"XXXXX")
    with caplog.at_level(logging.WARNING):
        loaded = store.latest()
    assert loaded["step"] == 2
    assert "ckpt-000000003.pt is unusable" in caplog.text
    assert store.steps() == [1, 2]  # the broken file is set aside, never picked again


def test_other_config_hash_is_refused_unless_resume_anyway(tmp_path):
    CheckpointStore(tmp_path, "old").save(state(5), 5, best_step=None)
    with pytest.raises(CheckpointMismatch, match="--resume-anyway"):
        CheckpointStore(tmp_path, "new").latest()
    assert CheckpointStore(tmp_path, "new").latest(resume_anyway=True)["step"] == 5


def test_keeps_last_n_plus_best_and_never_drifts(tmp_path):
    store = CheckpointStore(tmp_path, "h1", keep_last=2)
    for step in range(1, 8):
        store.save(state(step), step, best_step=2)
    assert store.steps() == [2, 6, 7]
    resumed = CheckpointStore(tmp_path, "h1", keep_last=2)  # a new process, same folder
    for step in range(8, 11):
        resumed.save(state(step), step, best_step=9)
    assert resumed.steps() == [9, 10]


def test_no_temp_files_left_behind(tmp_path):
    store = CheckpointStore(tmp_path, "h1")
    store.save(state(1), 1, best_step=None)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt-000000001.pt"]


class _Planted:
    """A pickled object that would run code when unpickled (what a tampered checkpoint carries)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_checkpoint_carrying_code_is_never_unpickled_even_with_a_valid_checksum(tmp_path, caplog):
    """Security regression: checkpoints are read with weights_only=True, so a file whose checksum was recomputed by
    whoever planted an object in it is refused (and set aside), and the object's code never runs."""
    import hashlib
    import io

    from trainpipe.engine.checkpoint import MAGIC

    store = CheckpointStore(tmp_path, "h1")
    store.save(state(1), 1, best_step=None)
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({**state(2), "config_hash": "h1", "step": 2, "evil": _Planted(str(marker))}, buffer)
    payload = buffer.getvalue()
    store.path(2).write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        CheckpointStore.read(store.path(2))
    with caplog.at_level(logging.WARNING):
        loaded = store.latest()
    assert loaded["step"] == 1 and not marker.exists()
    assert store.steps() == [1]
