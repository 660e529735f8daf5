"""Full training state written atomically with a checksum; the newest valid one is resumed.

What is in a checkpoint is the Trainer's `state_dict()` (engine/loop.py); this module stores it, and reads the
flat layout of format 1 into format 2's (`from_format_1`).
File layout: 8-byte magic, 32-byte SHA-256 of the payload, then a `torch.save` payload that
`torch.load(weights_only=True)` can read (tensors, numbers, strings, lists, dicts only), so a
checkpoint can never execute code. Written to a temp file of the writer's own, fsynced, renamed: a kill leaves either
the old set or the new file, and a truncated or bit-flipped file fails its checksum and is skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any

import torch

from trainpipe.engine.state import LoopCounters
from trainpipe.engine.stopping import EarlyStopping
from trainpipe.errors import RunError

log = logging.getLogger(__name__)
MAGIC = b"TPCKPT01"
NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


class CheckpointMismatch(RunError):
    """The folder holds checkpoints written under another config or code version."""


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """One folder of `ckpt-<step>.pt` files for one training run; keeps the last N plus the best."""

    def __init__(self, directory: Path, config_hash: str, keep_last: int = 2) -> None:
        self.dir, self.config_hash, self.keep_last = Path(directory), config_hash, keep_last
        self.dir.mkdir(parents=True, exist_ok=True)
        # Half-written files of a writer killed mid-save (SIGKILL). The folder is one run's, and one process
        # works on a run at a time (the run folder's lock), so no live writer's file is removed here.
        for stale in self.dir.glob(".ckpt-*.tmp"):
            stale.unlink(missing_ok=True)

    def path(self, step: int) -> Path:
        return self.dir / f"ckpt-{step:09d}.pt"

    def steps(self) -> list[int]:
        return sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := NAME.match(p.name)))

    def save(self, state: dict[str, Any], step: int, best_step: int | None) -> Path:
        buffer = io.BytesIO()
        torch.save({**state, "config_hash": self.config_hash, "step": step}, buffer)
        payload = buffer.getvalue()
        final = self.path(step)
        # A name of this writer's own: two processes on one checkpoint folder never rename each other's file.
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
        try:
            with open(tmp, "xb") as handle:
                handle.write(MAGIC + hashlib.sha256(payload).digest() + payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.dir)
        self.prune(best_step)
        return final

    def prune(self, best_step: int | None) -> None:
        """Keep the newest `keep_last` plus the best; derived from the folder, so it never drifts across resumes."""
        steps = self.steps()
        keep = set(steps[-self.keep_last:]) | ({best_step} if best_step is not None else set())
        for step in steps:
            if step not in keep:
                self.path(step).unlink(missing_ok=True)

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        """Load and verify one file; ValueError when it is truncated or corrupted."""
        blob = path.read_bytes()
        if len(blob) < 40 or blob[:8] != MAGIC:
            raise ValueError("not a trainpipe checkpoint or truncated header")
        digest, payload = blob[8:40], blob[40:]
        if hashlib.sha256(payload).digest() != digest:
            raise ValueError("checksum mismatch (truncated or corrupted)")
        return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")

    def latest(self, resume_anyway: bool = False) -> dict[str, Any] | None:
        """The newest valid checkpoint, skipping broken ones with a warning; refuses another config's."""
        for step in reversed(self.steps()):
            path = self.path(step)
            try:
                state = self.read(path)
            except Exception as exc:  # noqa: BLE001  any unreadable file: fall back to the previous one
                log.warning("checkpoint %s is unusable (%s); falling back to the previous one", path, exc)
                with contextlib.suppress(FileNotFoundError):  # another reader moved it first
                    os.replace(path, path.with_suffix(".corrupt"))
                continue
            if state.get("config_hash") != self.config_hash and not resume_anyway:
                raise CheckpointMismatch(
                    f"checkpoints in {self.dir} were written under another config or trainpipe version (hash "
                    f"{state.get('config_hash')} vs {self.config_hash}); pass --resume-anyway to load them, or "
                    "delete that folder to start training over", key="resume")
            state["path"] = str(path)
            return state
        return None


# Checkpoint layout: 2 = {part name: that part's state_dict()}; 1 = the flat dict written before parts
# had state_dicts (trainpipe 0.1.0 until this change), read through `from_format_1`.
FORMAT = 2


def from_format_1(old: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of the flat format 1 in format 2's layout (same values, grouped by the piece that owns them)."""
    new: dict[str, Any] = {
        "format": FORMAT, "module": old["module"], "optimizer": old["optimizer"], "scaler": old["scaler"],
        "rng": old["rng"], "cursor": {"epoch": old["epoch"], "pos": old["pos"], "order": old["perm"]},
        "stopping": {k: old[k] for k in EarlyStopping.STATE},
        "loop": {**{k: old[k] for k in LoopCounters.STATE if k != "step"}, "step": old["global_step"]}}
    if old.get("scheduler") is not None:
        new["scheduler"] = old["scheduler"]
    if "path" in old:
        new["path"] = old["path"]
    return new
