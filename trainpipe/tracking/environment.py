"""What a run records about where it ran: the git commit of the working folder, library versions, host."""

from __future__ import annotations

import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path


def git_info(cwd: Path) -> dict[str, str]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
        return {"git_commit": commit.stdout.strip(), "git_dirty": str(bool(dirty.stdout.strip())).lower()}
    except (OSError, subprocess.SubprocessError):
        return {}


def environment_tags() -> dict[str, str]:
    tags = {"python_version": platform.python_version(), "host": socket.gethostname()}
    for lib in ("trainpipe", "mlflow", "scikit-learn", "pandas", "numpy", "xgboost", "xgboost-cpu", "lightgbm", "torch"):
        try:
            tags[f"version.{lib}"] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return tags
