"""Installing a Debian package from the project's own scripts (PostgreSQL for `team up`, Chromium for the report
test), one apt-get at a time on this machine.

dpkg refuses a second apt-get while one runs ("Could not get lock"), so two installs started at once (two test
workers, or `team up` beside the browser test) would fail rather than wait. A file lock shared by every
trainpipe install serialises ours; `DPkg::Lock::Timeout` makes apt itself wait for anyone else's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

LOCK_FILE = Path("/tmp/trainpipe-apt.lock")
WAIT = ["-o", "DPkg::Lock::Timeout=600"]


def apt_install(packages: list[str], options: tuple[str, ...] = (), timeout: float = 900) -> subprocess.CompletedProcess:
    """`apt-get install -y packages`; on failure refresh the package lists once (a fresh machine has none) and
    retry. Returns the last attempt, whose returncode says whether it worked."""
    from filelock import FileLock

    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *WAIT, *options, *packages]
    with FileLock(str(LOCK_FILE), timeout=2 * timeout):
        result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=timeout)
        if result.returncode != 0:
            subprocess.run(["apt-get", "update", "-q", *WAIT], capture_output=True, text=True, env=env, timeout=timeout)
            result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=timeout)
    return result
