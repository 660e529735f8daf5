"""Files that appear whole or not at all, even when several processes write the same name at once.

Each writer builds its file under a name of its own in the target folder, then `os.replace`s it onto
the final name: a reader sees the old file or a complete new one, and two writers racing for one
name never touch each other's temporary file (the last rename wins, both files being complete).
The temporary name is opened with O_EXCL rather than by `tempfile.mkstemp`, which would create it
0600: run folders and the cache are shared by a team, so files keep the umask's permissions.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def temp_name(path: Path) -> Path:
    """A hidden sibling of `path` that no other process picks: `.<name>.<random>.tmp`."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


@contextlib.contextmanager
def replacing(path: Path, durable: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path next to `path`; on success it replaces `path`, on any error it is removed.

    durable: fsync the file before the rename, so a crash of the machine never leaves an empty file under
    the final name (what checkpoints and manifests need; a cache of something recomputable does not).
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if durable and tmp.exists():
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    with replacing(path, durable) as tmp, open(tmp, "xb") as handle:  # "x": never through a name someone else made
        handle.write(data)


def write_text(path: Path, text: str, durable: bool = False) -> None:
    write_bytes(path, text.encode(), durable)
