"""The run folder's file work: manifests, atomic JSON, output hashes, cache-key inputs, hard-linked reuse.

Plain functions with no knowledge of stage order or MLflow; run.py decides when to call them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Container
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainpipe import files
from trainpipe.hashing import file_digest

if TYPE_CHECKING:
    from filelock import BaseFileLock



def write_json(path: Path, doc: Any) -> None:
    """Atomic and fsynced under a temporary name of this process's own: run.json, manifests and cache
    index entries are written by concurrent runs, and a reader must never see half a file."""
    files.write_text(path, json.dumps(doc, indent=2, default=str), durable=True)


def _outputs(stage_dir: Path, skip: Container[str] = ()) -> dict[str, Path]:
    """{relative path: file} of the stage's outputs, but the manifest and the `skip` ones."""
    found = {str(p.relative_to(stage_dir)): p for p in sorted(stage_dir.rglob("*"))
             if p.is_file() and p.name != "manifest.json"}
    return {rel: p for rel, p in found.items() if rel not in skip}


# `pending`: files still being written in the background, {relative path: (size, sha256)} known in advance.
def file_sizes(stage_dir: Path, pending: dict[str, tuple[int, str]] | None = None) -> dict[str, int]:
    pending = pending or {}
    sizes = {rel: p.stat().st_size for rel, p in _outputs(stage_dir, pending).items()}
    return dict(sorted({**sizes, **{rel: size for rel, (size, _) in pending.items()}}.items()))


def file_digests(stage_dir: Path, pending: dict[str, tuple[int, str]] | None = None) -> dict[str, str]:
    pending = pending or {}
    digests = {rel: file_digest(p) for rel, p in _outputs(stage_dir, pending).items()}
    return dict(sorted({**digests, **{rel: digest for rel, (_, digest) in pending.items()}}.items()))


def outputs_present(stage_dir: Path, manifest: dict) -> bool:
    """Cheap first check (names and sizes) before anything is linked or hashed."""
    for rel, size in manifest.get("files", {}).items():
        path = stage_dir / rel
        if not path.is_file() or path.stat().st_size != size:
            return False
    return True


def changed_outputs(stage_dir: Path, manifest: dict) -> list[str] | None:
    """The outputs whose content no longer matches the hash the manifest recorded ([] when all match).

    Sizes alone let a matrix shuffled in place pass for the original, so reuse checks content. A
    manifest without hashes (written before they were recorded) cannot be checked: None, and the
    caller recomputes rather than trust it.
    """
    digests = manifest.get("digests")
    if digests is None or set(digests) != set(manifest.get("files", {})):
        return None
    changed = []
    for rel, digest in digests.items():
        try:
            if file_digest(stage_dir / rel) != digest:
                changed.append(rel)
        except OSError:
            changed.append(rel)
    return changed


def file_hashes(paths: list[str]) -> dict[str, str]:
    """Contents of files the config points at (a schema file, ranking feature tables), for a stage's cache key."""
    return {path: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in paths if Path(path).is_file()}


def lock_run(run_dir: Path, run_id: str) -> BaseFileLock:
    """Take the run's lock (`<run>/.lock`) without waiting, or raise a clear error when another process holds
    it: a resume while the run still runs, an orchestrator retrying a task that is still alive. One process
    per run means one writer of its temporary folders and run.json. flock: a killed holder frees it."""
    from filelock import FileLock, Timeout

    from trainpipe.errors import RunError

    lock = FileLock(str(run_dir / ".lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunError(f"run {run_id} is in use by another trainpipe process; wait for it to end (lock "
                       f"{run_dir / '.lock'})", key="run") from None
    for stale in run_dir.glob(".*.tmp"):  # temp files of a writer killed mid-write (SIGKILL): we are the writer now
        if stale.is_file():
            stale.unlink(missing_ok=True)
    return lock


def link_tree(source: Path, target: Path) -> None:
    """Hard-link a finished stage folder (copy where links are impossible): cached reuse costs no disk."""
    shutil.rmtree(target, ignore_errors=True)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)


def replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
