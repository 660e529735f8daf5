"""The reliability suite's figures: every test adds what it injected and what came of it (fixture `figures`), and
the session prints them at its end (and writes them to $RELIABILITY_FIGURES when set). `make reliability` runs
every test marked `reliability`; `make test` deselects them and runs the quick, unmarked part. tests/conftest.py
imports these fixtures and the hook, so tests anywhere under tests/ report into the same table."""

from __future__ import annotations

import json
import os
from collections import defaultdict

import pytest

SEED = int(os.environ.get("RELIABILITY_SEED", "20261130"))
FIGURES: dict[str, dict] = defaultdict(dict)


@pytest.fixture(scope="session")
def figures() -> dict[str, dict]:
    return FIGURES


@pytest.fixture(scope="session")
def seed() -> int:
    return SEED


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not FIGURES:
        return
    write = terminalreporter.write_line
    terminalreporter.section(f"reliability figures (seed {SEED})")
    for group, values in sorted(FIGURES.items()):
        write(f"{group}: " + ", ".join(f"{k} {v}" for k, v in values.items() if not isinstance(v, (list, dict))))
        for k, v in values.items():
            if isinstance(v, (list, dict)):
                write(f"  {k}: {json.dumps(v, default=str)}")
    target = os.environ.get("RELIABILITY_FIGURES")
    if target:
        with open(target, "w") as handle:
            json.dump({"seed": SEED, **FIGURES}, handle, indent=2, default=str)
