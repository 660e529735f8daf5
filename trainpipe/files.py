"""Files that appear whole or not at all, even when several processes write the same name at once.

Each writer builds its file under a name of its own in the target folder, then `os.replace`s it onto
the final name: a reader sees the old file or a complete new one, and two writers racing for one
name never touch each other's temporary file (the last rename wins, both files being complete).
The temporary name is opened with O_EXCL rather than by `tempfile.mkstemp`, which would create it
0600: run folders and the cache are shared by a team, so files keep the umask's permissions.

Two kinds of callers: the store (run.json, manifests, cache index entries, reports: `write_text`,
`replacing`) and a file the user names on the command line (`--out`: `atomic_output`, which also
refuses a path that cannot be written in one line naming the option, before any expensive work).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from trainpipe.errors import ConfigError


def temp_name(path: Path) -> Path:
    """A hidden sibling of `path` that no other process picks: `.<name>.<random>.tmp`."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


@contextlib.contextmanager
def _committed(tmp: Path, path: Path, durable: bool) -> Iterator[Path]:
    """Yield `tmp`; on success it replaces `path` (fsynced first when durable), on any error it is removed."""
    try:
        yield tmp
        if durable and tmp.exists():
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replacing(path: Path, durable: bool = False) -> contextlib.AbstractContextManager[Path]:
    """Yield a fresh temporary path next to `path`; on success it replaces `path`, on any error it is removed.

    durable: fsync the file before the rename, so a crash of the machine never leaves an empty file under
    the final name (what checkpoints and manifests need; a cache of something recomputable does not).
    """
    path = Path(path)
    return _committed(temp_name(path), path, durable)


def write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    with replacing(path, durable) as tmp, open(tmp, "xb") as handle:  # "x": never through a name someone else made
        handle.write(data)


def write_text(path: Path, text: str, durable: bool = False) -> None:
    write_bytes(path, text.encode(), durable)


def check_output(out: Path, example: str, option: str = "--out") -> None:
    """Cheap checks of a user's output file, to run before any expensive work (loading a model); `example` is a
    file name to suggest."""
    if out.is_dir():
        raise ConfigError(f"{option}: {out} is a folder; give a file such as {out / example}", key=option)
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{option}: cannot write {out}: {blocking} is a file, not a folder", key=option)


@contextlib.contextmanager
def atomic_output(out: Path, example: str, option: str = "--out") -> Iterator[Path]:
    """A file the user names (`--out`): refused in one line when it cannot be written, written under a unique
    temporary name beside it, renamed into place only when complete, and the temporary file removed on any error
    (Ctrl-C included), so a failed command leaves nothing behind. Yields the temporary path to write."""
    check_output(out, example, option)
    tmp = temp_name(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.open("x").close()
    except OSError as exc:
        raise ConfigError(f"{option}: cannot write {out}: {exc.strerror or exc}", key=option) from None
    with _committed(tmp, out, durable=False) as path:
        yield path
