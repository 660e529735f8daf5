"""Shared fixtures: small real data sets, config writers, a real MLflow store in a temp folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# One thread per training process unless a test says otherwise: `make test` runs two pytest workers on a
# two-core machine, and every process taking every core (trainpipe's default, engine/config.py default_threads)
# made them thrash; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.reliability.figures import figures, pytest_terminal_summary, seed  # noqa: F401  (the suite's figures)
from trainpipe.tools.datasets import breast_cancer, synthetic_churn

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    breast_cancer().to_parquet(folder / "bc.parquet", index=False)
    synthetic_churn(rows=3000, seed=1).to_csv(folder / "churn.csv", index=False)
    return folder


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "store"
    monkeypatch.setenv("TRAINPIPE_HOME", str(path))
    return path


@pytest.fixture
def write_config(tmp_path):
    """Write a pipeline YAML into tmp_path and return its path."""

    def write(doc: dict | str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
        return path

    return write


@pytest.fixture
def bc_config(data_dir, store) -> dict:
    return {"name": "bc", "task": "binary", "store": str(store),
            "data": {"path": str(data_dir / "bc.parquet"), "target": "diagnosis", "positive_class": "malignant"},
            "model": {"type": "xgboost", "params": {"n_estimators": 40, "max_depth": 3}},
            "training": {"early_stopping_rounds": 10, "threads": 1}}


@pytest.fixture
def churn_config(data_dir, store) -> dict:
    return {"name": "churn", "task": "binary", "store": str(store),
            "data": {"path": str(data_dir / "churn.csv"), "target": "churn", "id_column": "customer_id"},
            "model": {"type": "lightgbm", "params": {"n_estimators": 40}},
            "training": {"early_stopping_rounds": 10, "threads": 1}}


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """The real `trainpipe` command in a subprocess."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "trainpipe", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def run_cli_json(*args: str, **kwargs) -> tuple[int, dict]:
    proc = run_cli(*args, "--json", **kwargs)
    try:
        doc = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"stdout is not one JSON document:\n{proc.stdout}\nstderr:\n{proc.stderr}") from exc
    return proc.returncode, doc


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def cli_json():
    return run_cli_json


@pytest.fixture(scope="session")
def report_runs(tmp_path_factory):
    """Real small runs (binary, multiclass, regression, ranking, tuned, failed) shared by the report tests."""
    from tests.report_runs import ReportRuns

    return ReportRuns(tmp_path_factory.mktemp("report-runs"))


@pytest.fixture
def bf16_as_native(monkeypatch):
    """Tests of bf16 training itself: run it on any CPU. Where the CPU has no native bf16, `amp: bf16` trains in
    float32 (engine/precision.py); these tests check bf16's numerics, which emulation computes the same (slowly)."""
    from trainpipe.engine import precision

    monkeypatch.setattr(precision, "bf16_is_native", lambda: True)


def sampled(cases, core: set[str]) -> list:
    """Parametrize values of a table of cases: the `core` ones run in `make test`, the others are marked
    `extended` (`make extended` runs them): a few cases per stage or command keep CI within its time."""
    assert core <= set(cases), core - set(cases)
    return [case if case in core else pytest.param(case, marks=pytest.mark.extended) for case in cases]


def selected_tests(request) -> list:
    """This module's tests that the session runs (after -m deselection), for a module fixture that prepares
    what they read all at once."""
    return [item for item in request.session.items if item.module is request.module]


def selected_cases(request, param: str = "case") -> set:
    """The values of `param` among `selected_tests`."""
    return {item.callspec.params[param] for item in selected_tests(request)
            if param in getattr(getattr(item, "callspec", None), "params", {})}
