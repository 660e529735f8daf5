"""A file the user names on the command line (`--out`): refused in one line when it cannot be written,
written under a unique temporary name beside it, renamed into place only when complete, and the temporary
file removed on any error (Ctrl-C included), so a failed command leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from trainpipe.errors import ConfigError


def check_output(out: Path, example: str, option: str = "--out") -> None:
    """Cheap checks to run before any expensive work (loading a model); `example` is a file name to suggest."""
    if out.is_dir():
        raise ConfigError(f"{option}: {out} is a folder; give a file such as {out / example}", key=option)
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{option}: cannot write {out}: {blocking} is a file, not a folder", key=option)


@contextlib.contextmanager
def atomic_output(out: Path, example: str, option: str = "--out") -> Iterator[Path]:
    """Yields the temporary path to write; on success it becomes `out` (two writers never share a name)."""
    check_output(out, example, option)
    # a unique name, created exclusively; not mkstemp, whose 0600 mode the finished file would keep
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.open("x").close()
    except OSError as exc:
        raise ConfigError(f"{option}: cannot write {out}: {exc.strerror or exc}", key=option) from None
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
