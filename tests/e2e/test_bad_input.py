"""Bad input through the real CLI: the error contract, case by case.

For every mistake a user can make in the config or the data, `trainpipe run` must print one line
starting with `error:` that names the key, column or file, exit with code 2, print no traceback
(unless --debug), mark the MLflow run FAILED (when the mistake is found after the run started), and
leave nothing half-written: no folder of the failing or a later stage, no `.<stage>.tmp` folder, no
cache entry for the failing stage, and no run at all for mistakes found before the run starts.

Each case keeps its data to exactly one problem, so exactly one `error:` line is expected.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from trainpipe.data.split import random_split
from trainpipe.datasets import breast_cancer

pytestmark = pytest.mark.e2e

STAGES = ("ingest", "validate", "split", "features", "train", "evaluate")
RARE_CLASS_SEED = 7


# --------------------------------------------------------------------------------------------------
# Bad data files, written once for the module (each has exactly one problem).
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad_data")
    bc = breast_cancer()

    (folder / "x.parquet").write_bytes(bytes(range(256)) * 4)  # not Parquet at all
    (folder / "ragged.csv").write_text("a,b,label\n1,2,x\n3,4,y\n5,6,7,z\n8,9,x\n")  # line 4 has 4 fields
    (folder / "header_only.csv").write_text(",".join(bc.columns) + "\n")

    text = bc.copy()
    text["mean_radius"] = text["mean_radius"].map(lambda v: f"{v:.1f} mm")  # schema says float
    text.to_parquet(folder / "text_radius.parquet", index=False)

    nulls = bc.copy()
    nulls.loc[[0, 1, 2], "mean_radius"] = np.nan
    nulls.to_parquet(folder / "null_radius.parquet", index=False)

    null_labels = bc.copy()
    null_labels["diagnosis"] = null_labels["diagnosis"].astype(object)
    null_labels.loc[[0, 1, 2], "diagnosis"] = None
    null_labels.to_parquet(folder / "null_labels.parquet", index=False)

    bc[bc["diagnosis"] == "benign"].to_parquet(folder / "benign_only.parquet", index=False)

    # Multiclass where class 'c' has two rows, both placed in train by the seeded random split that
    # trainpipe itself uses (so the split leaves 'c' absent from validation, deterministically).
    n = 120
    rng = np.random.default_rng(0)
    labels = np.where(np.arange(n) % 2 == 0, "a", "b").astype(object)
    labels[random_split(n, 0.15, 0.15, RARE_CLASS_SEED)["train"][:2]] = "c"
    pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "label": labels}).to_csv(
        folder / "rare_class.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def migrated_mlflow_db(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store with its schema migrations done, made once for the module."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow_template")
    MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db").search_experiments(max_results=1)
    return folder / "mlflow.db"


def seed_store(store: Path, migrated_mlflow_db: Path) -> Path:
    """A store holding a copy of the migrated MLflow database: the migrations of a fresh store cost
    each subprocess seconds, and they are not what these tests are about."""
    store.mkdir(parents=True, exist_ok=True)
    shutil.copy(migrated_mlflow_db, store / "mlflow.db")
    (store / "mlflow.db.ready").touch()  # what trainpipe.tracking.Tracker writes after migrating
    return store


@pytest.fixture
def run_store(store, migrated_mlflow_db) -> Path:
    return seed_store(store, migrated_mlflow_db)


# --------------------------------------------------------------------------------------------------
# The contract, as assertions.
# --------------------------------------------------------------------------------------------------
def assert_one_error_line(proc, *names: str) -> str:
    """Exit 2, no traceback, exactly one `error:` line on stderr, naming every one of `names`."""
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 2, shown
    assert "Traceback" not in proc.stderr, shown
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, shown
    for name in names:
        assert name in errors[0], f"{name!r} is not named in: {errors[0]}"
    return errors[0]


def assert_no_run_started(store: Path) -> None:
    """Found before the run starts: no run folder, no MLflow store."""
    runs = store / "runs"
    assert not runs.exists() or not any(runs.iterdir()), sorted(p.name for p in runs.iterdir())
    assert not (store / "mlflow.db").exists()


def mlflow_runs(store: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiment_ids=experiments)


def assert_run_failed_cleanly(store: Path, failed_stage: str, name: str) -> None:
    """One run folder, status failed; earlier stages done, nothing of the failing or later stages
    (evidence in `<stage>.failed` is allowed), no temp leftovers; the MLflow run is FAILED."""
    runs = sorted((store / "runs").iterdir())
    assert len(runs) == 1, runs
    run_dir = runs[0]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "failed"
    assert name in meta["error"]

    done = set(STAGES[: STAGES.index(failed_stage)])
    folders = {p.name for p in run_dir.iterdir() if p.is_dir()}
    assert done <= folders, folders
    assert folders <= done | {f"{failed_stage}.failed"}, f"half-written or later stage folders: {folders - done}"
    leftovers = [str(p.relative_to(store)) for p in store.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers
    assert not (store / "cache" / "index" / failed_stage).exists(), "a failed stage must not enter the cache index"

    (run,) = mlflow_runs(store)
    assert run.info.status == "FAILED"
    assert run.data.tags.get("trainpipe.run_id") == run_dir.name
    assert name in run.data.tags.get("trainpipe.error", "")


# --------------------------------------------------------------------------------------------------
# Config mistakes: found before any run folder or MLflow run exists.
# --------------------------------------------------------------------------------------------------
def _rename(section: dict, old: str, new: str) -> None:
    section[new] = section.pop(old)


# (edit of the bc config, names the error line must contain, the JSON "key")
CONFIG_MISTAKES = {
    "unknown_key_suggests_model": (lambda c: _rename(c, "model", "modle"),
                                   ["'modle'", "did you mean 'model'?"], "modle"),
    "unknown_nested_key_suggests_model_params": (lambda c: _rename(c["model"], "params", "paramz"),
                                                 ["'model.paramz'", "did you mean 'model.params'?"], "model.paramz"),
    "seed_not_an_integer": (lambda c: c.update(seed="abc"), ["seed", "'abc'"], "seed"),
    "split_validation_not_a_number": (lambda c: c.update(split={"validation": "lots"}),
                                      ["split.validation", "'lots'"], "split.validation"),
    "unknown_model_type_suggests_xgboost": (lambda c: c.update(model={"type": "xgbost"}),
                                            ["model.type", "'xgbost'", "did you mean 'xgboost'?"], "model.type"),
    "sklearn_class_that_does_not_exist": (
        lambda c: c.update(model={"type": "sklearn", "estimator": "sklearn.ensemble.NoSuchThing"}),
        ["model.estimator", "NoSuchThing"], "model.estimator"),
    "sklearn_module_that_does_not_exist": (
        lambda c: c.update(model={"type": "sklearn", "estimator": "nosuchpkg.Model"}),
        ["model.estimator", "nosuchpkg"], "model.estimator"),
    "sklearn_path_to_a_class_that_is_not_an_estimator": (
        lambda c: c.update(model={"type": "sklearn", "estimator": "collections.OrderedDict"}),
        ["model.estimator", "collections.OrderedDict", "not a scikit-learn estimator"], "model.estimator"),
    "sklearn_path_to_a_module_not_an_estimator": (
        lambda c: c.update(model={"type": "sklearn", "estimator": "os.path"}),
        ["model.estimator", "os.path", "not a scikit-learn estimator"], "model.estimator"),
}


def _bad_config(name: str, bc_config: dict, write_config) -> Path:
    edit, _, _ = CONFIG_MISTAKES[name]
    edit(bc_config)
    return write_config(bc_config)


@pytest.mark.parametrize("case", list(CONFIG_MISTAKES))
def test_config_mistake_names_the_key_and_starts_no_run(case, bc_config, write_config, store, cli):
    path = _bad_config(case, bc_config, write_config)
    proc = cli("run", str(path), cwd=path.parent)
    assert_one_error_line(proc, *CONFIG_MISTAKES[case][1])
    assert_no_run_started(store)


def test_missing_config_file_names_the_file_and_starts_no_run(tmp_path, store, cli):
    proc = cli("run", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert_one_error_line(proc, "nope.yaml", "not found")
    assert_no_run_started(store)


def test_invalid_yaml_names_the_file_and_line_and_starts_no_run(write_config, store, cli):
    path = write_config("name: bc\ntask: binary\ndata:\n  path: a.csv\n   target: y\n")
    proc = cli("run", str(path), cwd=path.parent)
    assert_one_error_line(proc, "pipeline.yaml", "invalid YAML", "line 5")
    assert_no_run_started(store)


# --------------------------------------------------------------------------------------------------
# Data mistakes: found by ingest, validate or split, after the run started.
# --------------------------------------------------------------------------------------------------
def _data(c: dict, path: Path, target: str | None = None, **data) -> None:
    c["data"] = {"path": str(path), "target": target or c["data"]["target"], **data}


def _schema(c: dict, **columns) -> None:
    c["schema"] = {"columns": columns}


# (edit of the bc config given the bad-data folder, stage that fails, names the error line must contain)
DATA_MISTAKES = {
    "missing_data_file": (lambda c, d: _data(c, d / "nope.parquet"), "ingest", ["data.path", "nope.parquet"]),
    # The line must show the pattern as written (brackets are not console markup).
    "glob_matching_no_file": (lambda c, d: _data(c, d / "part-[a-z]*.parquet"), "ingest",
                              ["data.path", "part-[a-z]*.parquet"]),
    "corrupt_parquet": (lambda c, d: _data(c, d / "x.parquet"), "ingest", ["data.path", "x.parquet"]),
    "csv_with_ragged_row": (lambda c, d: _data(c, d / "ragged.csv", "label"), "ingest",
                            ["data.path", "ragged.csv", "line 4"]),
    "empty_dataset": (lambda c, d: _data(c, d / "header_only.csv"), "ingest",
                      ["data.path", "header_only.csv", "empty"]),
    "schema_column_absent_from_data": (lambda c, d: _schema(c, smoothness_index={"dtype": "float"}), "validate",
                                       ["'smoothness_index'", "missing"]),
    "strings_where_schema_says_float": (
        lambda c, d: (_data(c, d / "text_radius.parquet"), _schema(c, mean_radius={"dtype": "float"})),
        "validate", ["'mean_radius'", "float"]),
    "nulls_in_non_nullable_column": (
        lambda c, d: (_data(c, d / "null_radius.parquet"),
                      _schema(c, mean_radius={"dtype": "float", "nullable": False})),
        "validate", ["'mean_radius'", "null"]),
    "strict_value_out_of_range": (
        lambda c, d: _schema(c, mean_radius={"dtype": "float", "min": 0, "max": 10, "strict": True}),
        "validate", ["'mean_radius'"]),
    "null_labels": (lambda c, d: _data(c, d / "null_labels.parquet", positive_class="malignant"), "validate",
                    ["data.target", "'diagnosis'", "null label"]),
    "single_class": (lambda c, d: _data(c, d / "benign_only.parquet"), "validate",
                     ["data.target", "'diagnosis'", "single class"]),
    "split_leaves_class_absent_from_validation": (
        lambda c, d: (_data(c, d / "rare_class.csv", "label"),
                      c.update(task="multiclass", seed=RARE_CLASS_SEED, schema={"min_class_count": 1},
                               split={"strategy": "random", "validation": 0.15, "test": 0.15})),
        "split", ["split.validation", "'c'"]),
}


# Cases also run with --json, and the part of the JSON "key" that names the culprit.
JSON_DATA_CASES = {"missing_data_file": "data.path", "schema_column_absent_from_data": "smoothness_index"}


@pytest.fixture(scope="module")
def data_runs(data_dir, bad_data, migrated_mlflow_db, tmp_path_factory) -> dict:
    """Every data case (and its --json run where listed) through the real CLI, each in its own store,
    two subprocesses at a time: each spends seconds importing pandas and MLflow, so running them in
    parallel keeps this file near a minute on two cores. Keyed by (case, extra CLI flags)."""
    jobs = {}
    for case, (edit, _, _) in DATA_MISTAKES.items():
        for flags in [(), ("--json",)] if case in JSON_DATA_CASES else [()]:
            folder = tmp_path_factory.mktemp(case)
            store = seed_store(folder / "store", migrated_mlflow_db)
            # The same config as conftest's bc_config (a function fixture, so not usable here).
            doc = {"name": "bc", "task": "binary", "store": str(store),
                   "data": {"path": str(data_dir / "bc.parquet"), "target": "diagnosis", "positive_class": "malignant"},
                   "model": {"type": "xgboost", "params": {"n_estimators": 40, "max_depth": 3}},
                   "training": {"early_stopping_rounds": 10, "threads": 1}}
            edit(doc, bad_data)
            (folder / "pipeline.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
            jobs[case, flags] = (folder, store)

    def run(key):
        (_, flags), (folder, store) = key, jobs[key]
        proc = subprocess.run([sys.executable, "-m", "trainpipe", "run", str(folder / "pipeline.yaml"), *flags],
                              capture_output=True, text=True, cwd=folder, timeout=240, check=False,
                              env={**os.environ, "COLUMNS": "200", "TRAINPIPE_HOME": str(store)})
        return proc, store

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(jobs, pool.map(run, jobs)))


@pytest.mark.parametrize("case", list(DATA_MISTAKES))
def test_data_mistake_names_the_culprit_and_fails_the_run_cleanly(case, data_runs):
    proc, store = data_runs[case, ()]
    _, stage, names = DATA_MISTAKES[case]
    assert_one_error_line(proc, *names)
    assert_run_failed_cleanly(store, stage, names[0])


def test_out_of_range_value_without_strict_only_warns_and_the_run_succeeds(bc_config, write_config, run_store,
                                                                           cli):
    _schema(bc_config, mean_radius={"dtype": "float", "min": 0, "max": 10})
    path = write_config(bc_config)
    proc = cli("run", str(path), cwd=path.parent)
    assert proc.returncode == 0, proc.stderr
    assert "error:" not in proc.stderr and "Traceback" not in proc.stderr
    warnings = [line for line in proc.stdout.splitlines() if "warning:" in line]
    assert any("mean_radius" in line for line in warnings), proc.stdout
    (run_dir,) = (run_store / "runs").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert all((run_dir / stage).is_dir() for stage in STAGES)
    (run,) = mlflow_runs(run_store)
    assert run.info.status == "FINISHED"
    assert "trainpipe.error" not in run.data.tags


# --------------------------------------------------------------------------------------------------
# --json and --debug
# --------------------------------------------------------------------------------------------------
JSON_CONFIG_CASES = ["unknown_key_suggests_model", "seed_not_an_integer", "unknown_model_type_suggests_xgboost",
                     "sklearn_path_to_a_class_that_is_not_an_estimator"]


@pytest.mark.parametrize("case", JSON_CONFIG_CASES)
def test_json_config_mistake_is_one_document_with_error_and_key(case, bc_config, write_config, store, cli_json):
    path = _bad_config(case, bc_config, write_config)
    code, doc = cli_json("run", str(path), cwd=path.parent)
    assert code == 2
    assert doc["key"] == CONFIG_MISTAKES[case][2]
    assert all(name in doc["error"] for name in CONFIG_MISTAKES[case][1]), doc
    assert_no_run_started(store)


def test_json_missing_config_file_is_one_document_with_error_and_key(tmp_path, store, cli_json):
    code, doc = cli_json("run", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert code == 2
    assert "key" in doc and "nope.yaml" in doc["error"]


@pytest.mark.parametrize("case", list(JSON_DATA_CASES))
def test_json_data_mistake_is_one_document_with_error_and_key(case, data_runs):
    proc, store = data_runs[case, ("--json",)]
    _, stage, names = DATA_MISTAKES[case]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)  # exactly one JSON document, nothing else on stdout
    assert JSON_DATA_CASES[case] in (doc["key"] or ""), doc
    assert all(name in doc["error"] for name in names), doc
    assert_run_failed_cleanly(store, stage, names[0])


def test_debug_shows_the_traceback_and_keeps_exit_code_2(bc_config, write_config, store, cli):
    path = _bad_config("unknown_key_suggests_model", bc_config, write_config)
    proc = cli("run", str(path), "--debug", cwd=path.parent)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert "ConfigError" in proc.stderr
    assert any(line.startswith("error:") and "'modle'" in line for line in proc.stderr.splitlines())


# --------------------------------------------------------------------------------------------------
# Too little data to judge: the gate refuses (exit 3), nothing is registered.
# --------------------------------------------------------------------------------------------------
def test_a_tiny_table_fails_the_gate_on_too_few_test_rows_and_registers_nothing(bc_config, write_config, run_store,
                                                                                tmp_path, cli):
    """Issue 10 §4: 25 rows left 4 test rows, test AUC 1.0, and the model became champion."""
    breast_cancer().sample(25, random_state=0).to_parquet(tmp_path / "tiny.parquet", index=False)
    _data(bc_config, tmp_path / "tiny.parquet", positive_class="malignant")
    path = write_config(bc_config)
    proc = cli("run", str(path), cwd=path.parent)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "4 test rows < gates.min_test_rows 20" in line and "[gates.min_test_rows]" in line, line
    (run_dir,) = (run_store / "runs").iterdir()
    assert not (run_dir / "register").exists() and (run_dir / "gate.failed" / "decision.json").exists()
    from mlflow.tracking import MlflowClient

    assert not MlflowClient(tracking_uri=f"sqlite:///{run_store}/mlflow.db").search_registered_models()

    bc_config["gates"] = {"min_test_rows": 4}  # the documented way to accept it anyway
    assert cli("run", str(write_config(bc_config)), cwd=path.parent).returncode == 0
