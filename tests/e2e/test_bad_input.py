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

from tests.conftest import sampled, selected_cases
from tests.reliability.figures import FIGURES
from trainpipe.data.split import random_split
from trainpipe.tools.datasets import breast_cancer, synthetic_churn

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
    nulls.loc[[300], "mean_radius"] = np.nan  # 4 nulls in 2 row groups
    nulls.to_parquet(folder / "null_radius_groups.parquet", index=False, row_group_size=100)

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

    # The header names mean_radius twice (pandas would silently call the copy mean_radius.1).
    bc.rename(columns={"mean_texture": "mean_radius"}).to_csv(folder / "dup_header.csv", index=False)
    # Latin-1 bytes read as UTF-8.
    bc.assign(clinic=np.where(np.arange(len(bc)) % 2, "Genève", "Zürich")).to_csv(
        folder / "latin1.csv", index=False, encoding="latin-1")
    # A folder of two exports whose schemas drifted (as in issue 10: Contract vs contract, tenure gone).
    churn = synthetic_churn(rows=600, seed=5)
    (folder / "exports").mkdir()
    churn.iloc[:300].to_csv(folder / "exports" / "2024-01.csv", index=False)
    churn.iloc[300:].rename(columns={"contract": "Contract"}).drop(columns=["tenure_months"]).to_csv(
        folder / "exports" / "2024-02.csv", index=False)
    # Infinite and float32-overflowing numbers in one feature each.
    bc.assign(mean_radius=np.where(np.arange(len(bc)) == 7, np.inf, bc["mean_radius"])).to_parquet(
        folder / "inf_radius.parquet", index=False)
    bc.assign(mean_texture=np.where(np.arange(len(bc)) == 3, 1e308, bc["mean_texture"])).to_parquet(
        folder / "huge_texture.parquet", index=False)
    (folder / "dup_schema.yaml").write_text("columns:\n  mean_radius: {dtype: float}\n  mean_area: {dtype: float}\n"
                                            "  mean_radius: {dtype: int}\n")
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
    tally = FIGURES["bad inputs"]  # the reliability suite's figures: every case that gave its one line
    tally["one-line errors"] = tally.get("one-line errors", 0) + 1
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
    "beat_baselines_on_a_tabular_task": (lambda c: c.update(gates={"beat_baselines": True}),
                                         ["gates.beat_baselines", "only task ranking scores baselines"],
                                         "gates.beat_baselines"),
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
    "torch_mlp_negative_hidden_layer": (
        lambda c: c.update(model={"type": "torch_mlp", "params": {"hidden_dims": [64, -3]}}),
        ["model.params.hidden_dims[1]", "greater than 0", "-3"], "model.params.hidden_dims[1]"),
    "torch_mlp_dropout_of_one": (lambda c: c.update(model={"type": "torch_mlp", "params": {"dropout": 1.0}}),
                                 ["model.params.dropout", "less than 1"], "model.params.dropout"),
    "training_callback_that_is_not_an_import_path": (
        lambda c: c["training"].update(callbacks=["my callbacks.py"]),
        ["training.callbacks", "'my callbacks.py' is not an import path like mypackage.callbacks:MyCallback"],
        "training.callbacks"),
    "dask_for_a_torch_family": (
        lambda c: c.update(model={"type": "torch_mlp"}, training={"distributed": {"dask": {"cluster": "local"}}}),
        ["training.distributed.dask", "only xgboost and lightgbm train on Dask", "'torch_mlp'"],
        "training.distributed.dask"),
    "dask_cluster_that_is_not_an_address": (
        lambda c: c["training"].update(distributed={"dask": {"cluster": "my-laptop"}}),
        ["training.distributed.dask", "cluster", "'my-laptop'"], "training.distributed.dask"),
    "dask_worker_count_for_an_existing_cluster": (
        lambda c: c["training"].update(distributed={"dask": {"cluster": "tcp://10.0.0.5:8786", "n_workers": 4}}),
        ["training.distributed.dask", "n_workers", "only for cluster `local`"], "training.distributed.dask"),
    "lightgbm_train_metrics_on_dask": (
        lambda c: (c.update(model={"type": "lightgbm"}),
                   c["training"].update(train_metrics=True, distributed={"dask": {"cluster": "local"}})),
        ["training.train_metrics", "LightGBM on Dask"], "training.train_metrics"),
    "torchrun_processes_for_a_booster": (
        lambda c: c.update(model={"type": "xgboost"}, training={"distributed": {"nproc_per_node": 2}}),
        ["training.distributed.nproc_per_node", "xgboost trains in one process"], "training.distributed.nproc_per_node"),
    "ddp_trials_for_a_booster": (
        lambda c: c.update(tuning={"enabled": True, "trial_world_size": 2}),
        ["tuning.trial_world_size", "xgboost trains in one process"], "tuning.trial_world_size"),
    "store_is_a_file": (lambda c: c.update(store="pipeline.yaml"),  # the config file itself
                        ["store:", "pipeline.yaml", "is a file"], "store"),
    "orchestration_retries_negative": (lambda c: c.update(orchestration={"retries": -1}),
                                       ["orchestration.retries", "greater than or equal to 0", "-1"],
                                       "orchestration.retries"),
    # data.streaming: on with what needs the whole table in memory (docs/distributed.md)
    "streaming_with_a_family_that_needs_memory": (
        lambda c: (c["data"].update(streaming="on"), c.update(model={"type": "lightgbm"})),
        ["data.streaming", "model.type lightgbm needs the table in memory"], "data.streaming"),
    "streaming_with_a_time_split": (
        lambda c: (c["data"].update(streaming="on"), c.update(split={"strategy": "time", "time_column": "mean_area"})),
        ["split.strategy", "time needs the whole table", "data.streaming: off"], "split.strategy"),
    "streaming_with_drift_on_every_row": (
        lambda c: (c["data"].update(streaming="on"), c.update(drift={"max_rows": None})),
        ["drift.max_rows", "every row in memory", "data.streaming: off"], "drift.max_rows"),
    "alert_webhook_whose_url_variable_is_not_set": (
        lambda c: c.update(alerts={"webhooks": {"team": {"url_env": "TRAINPIPE_TEST_UNSET_WEBHOOK_URL"}}}),
        ["alerts.webhooks.team.url_env", "TRAINPIPE_TEST_UNSET_WEBHOOK_URL", "is not set"],
        "alerts.webhooks.team.url_env"),
    "alert_webhook_url_written_where_its_variable_name_goes": (
        lambda c: c.update(alerts={"webhooks": {"team": {"url_env": "https://hooks.example.test/T0/B0"}}}),
        ["alerts.webhooks.team.url_env", "NAME of an environment variable"], "alerts.webhooks.team.url_env"),
    "health_throughput_share_above_one": (lambda c: c.update(health={"throughput_drop": 2}),
                                          ["health.throughput_drop", "less than 1"], "health.throughput_drop"),
    # found by fuzzing (tests/unit/test_config_fuzz.py): a store that is not text was a TypeError traceback
    "store_is_not_text": (lambda c: c.update(store=True), ["store", "string"], "store"),
    "store_is_a_list": (lambda c: c.update(store=["a", "b"]), ["store"], "store"),
    "data_section_is_a_list": (lambda c: c.update(data=["x.csv"]), ["data"], "data"),
    "model_params_is_a_list": (lambda c: c["model"].update(params=[1, 2]), ["model.params"], "model.params"),
    "task_unknown": (lambda c: c.update(task="clustering"), ["task", "'clustering'"], "task"),
    "env_variable_that_is_not_set": (lambda c: c["data"].update(target="${oc.env:TRAINPIPE_NO_SUCH_VARIABLE}"),
                                     ["data.target", "TRAINPIPE_NO_SUCH_VARIABLE"], "data.target"),
    "reference_to_a_key_that_does_not_exist": (lambda c: c.update(name="${nosuch.key}"), ["name", "nosuch"], "name"),
    "split_fractions_above_one": (lambda c: c.update(split={"validation": 0.6, "test": 0.6}), ["split"], "split"),
    "tuning_trials_zero": (lambda c: c.update(tuning={"enabled": True, "n_trials": 0}), ["tuning.n_trials"],
                           "tuning.n_trials"),
    "tuning_grace_not_longer_than_heartbeat": (
        lambda c: c.update(tuning={"enabled": True, "heartbeat_interval": 10, "grace_period": 5}),
        ["tuning.grace_period"], "tuning.grace_period"),
    # nothing listens on port 9: one line at once, not MLflow's minutes of retries then an internal error
    "tracking_server_that_does_not_answer": (lambda c: c.update(tracking={"uri": "http://127.0.0.1:9"}),
                                             ["tracking.uri", "http://127.0.0.1:9", "does not answer"], "tracking.uri"),
    "budget_max_cost_without_a_price": (lambda c: c.update(budget={"max_cost": 5}),
                                        ["budget.max_cost", "needs a price in cost.rates"], "budget.max_cost"),
    "drift_psi_fail_below_psi_warn": (lambda c: c.update(drift={"psi_warn": 0.3, "psi_fail": 0.2}),
                                      ["drift", "psi_fail: must be at least psi_warn (0.3)"], "drift"),
}


def _bad_config(name: str, bc_config: dict, write_config) -> Path:
    edit, _, _ = CONFIG_MISTAKES[name]
    edit(bc_config)
    return write_config(bc_config)


# make test: one or two per kind (syntax, model, sections, interpolation, a server); the rest with make extended
CORE_CONFIG_MISTAKES = {"unknown_key_suggests_model", "seed_not_an_integer", "unknown_model_type_suggests_xgboost",
                        "sklearn_class_that_does_not_exist", "torch_mlp_dropout_of_one", "store_is_a_file",
                        "env_variable_that_is_not_set", "split_fractions_above_one",
                        "tracking_server_that_does_not_answer", "streaming_with_a_time_split"}


@pytest.mark.parametrize("case", sampled(CONFIG_MISTAKES, CORE_CONFIG_MISTAKES))
def test_config_mistake_names_the_key_and_starts_no_run(case, bc_config, write_config, store, cli):
    path = _bad_config(case, bc_config, write_config)
    proc = cli("run", str(path), cwd=path.parent)
    assert_one_error_line(proc, *CONFIG_MISTAKES[case][1])
    assert_no_run_started(store)


def test_dask_config_without_the_dask_extra_names_the_extra_and_starts_no_run(bc_config, write_config, store):
    """`dask`/`distributed` made unimportable in the CLI's process (as on a machine without trainpipe[dask])."""
    bc_config["training"]["distributed"] = {"dask": {"cluster": "local"}}
    path = write_config(bc_config)
    without_dask = ("import sys; sys.modules['dask'] = sys.modules['distributed'] = None; "
                    "from trainpipe.cli import main; sys.argv = ['trainpipe', *sys.argv[1:]]; main()")
    proc = subprocess.run([sys.executable, "-c", without_dask, "run", str(path)], capture_output=True, text=True,
                          cwd=path.parent, env={**os.environ, "COLUMNS": "200"}, timeout=120, check=False)
    assert_one_error_line(proc, "training.distributed.dask", "pip install 'trainpipe[dask]'")
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


def test_a_key_given_twice_names_both_lines_and_starts_no_run(bc_config, write_config, store, cli):
    """Issue 10: the second `name:` silently won and the model was registered under it."""
    text = yaml.safe_dump(bc_config, sort_keys=False) + "name: other-model\n"
    path = write_config(text)
    line = text.count("\n")
    proc = cli("run", str(path), cwd=path.parent)
    assert_one_error_line(proc, "pipeline.yaml", f"line {line}", "duplicate key 'name'", "first set at line 1")
    assert_no_run_started(store)


def test_a_set_value_that_is_broken_yaml_names_the_item_and_starts_no_run(bc_config, write_config, store, cli):
    path = write_config(bc_config)
    proc = cli("run", str(path), "--set", "features.drop=[mean_area,", cwd=path.parent)
    assert_one_error_line(proc, "--set 'features.drop=[mean_area,'", "not valid YAML")
    assert_no_run_started(store)


def test_store_option_or_trainpipe_home_pointing_at_a_file_is_one_error_line(bc_config, write_config, store, cli,
                                                                            tmp_path):
    path = write_config({k: v for k, v in bc_config.items() if k != "store"})
    proc = cli("run", str(path), "--store", str(path), cwd=path.parent)
    assert_one_error_line(proc, "--store:", "is a file")
    proc = cli("runs", "list", env={"TRAINPIPE_HOME": str(path / "below")}, cwd=tmp_path)
    assert_one_error_line(proc, "TRAINPIPE_HOME:", f"under {path}, which is a file")
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
    "csv_header_names_a_column_twice": (lambda c, d: _data(c, d / "dup_header.csv"), "ingest",
                                        ["data.path", "'mean_radius'", "dup_header.csv", "more than once"]),
    "csv_in_latin1_read_as_utf8": (lambda c, d: _data(c, d / "latin1.csv"), "ingest",
                                   ["data.csv_options.encoding", "latin1.csv", "utf-8"]),
    "folder_whose_files_have_different_schemas": (
        lambda c, d: _data(c, d / "exports", "churn"), "ingest", ["data.path", "2024-01.csv", "2024-02.csv", "'contract' vs 'Contract'", "'tenure_months'"]),
    "infinite_value_in_a_feature": (lambda c, d: _data(c, d / "inf_radius.parquet"), "validate",
                                    ["'mean_radius'", "infinite", "data.infinite: missing"]),
    "value_beyond_float32_in_a_feature": (lambda c, d: _data(c, d / "huge_texture.parquet"), "validate",
                                          ["'mean_texture'", "1e+308", "data.infinite"]),
    "schema_file_names_a_column_twice": (lambda c, d: c.update(schema={"path": str(d / "dup_schema.yaml")}), "validate",
                                         ["schema.path", "duplicate key 'mean_radius'", "line 4"]),
    "streaming_a_csv_file": (lambda c, d: _data(c, d / "ragged.csv", "label", streaming="on"), "ingest",
                             ["data.streaming", "ragged.csv", "Parquet"]),
    "streamed_nulls_in_non_nullable_column": (  # validate's checks summed over row groups of 100 rows
        lambda c, d: (_data(c, d / "null_radius_groups.parquet", streaming="on", stream_batch_rows=1000),
                      _schema(c, mean_radius={"dtype": "float", "nullable": False})),
        "validate", ["'mean_radius'", "4 null value(s)"]),
    "native_categoricals_for_a_family_without_them": (
        lambda c, d: c.update(model={"type": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression"},
                              features={"categorical": {"encoding": "native"}}),
        "features", ["features.categorical.encoding", "native", "xgboost, lightgbm"]),
    "split_leaves_class_absent_from_validation": (
        lambda c, d: (_data(c, d / "rare_class.csv", "label"),
                      c.update(task="multiclass", seed=RARE_CLASS_SEED, schema={"min_class_count": 1},
                               split={"strategy": "random", "validation": 0.15, "test": 0.15})),
        "split", ["split.validation", "'c'"]),
}


# Cases also run with --json, and the part of the JSON "key" that names the culprit.
JSON_DATA_CASES = {"missing_data_file": "data.path", "schema_column_absent_from_data": "smoothness_index"}


@pytest.fixture(scope="module")
def data_runs(request, data_dir, bad_data, migrated_mlflow_db, tmp_path_factory) -> dict:
    """Every data case this session tests (and its --json run where listed) through the real CLI, each in its
    own store, two subprocesses at a time: each spends seconds importing pandas and MLflow, so running them in
    parallel keeps this file near a minute on two cores. Keyed by (case, extra CLI flags)."""
    jobs, cases = {}, selected_cases(request)
    for case, (edit, _, _) in DATA_MISTAKES.items():
        if case not in cases:
            continue
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


# make test: the culprits of each failing stage (ingest, validate, split); the rest with make extended
CORE_DATA_MISTAKES = {"missing_data_file", "csv_with_ragged_row", "schema_column_absent_from_data",
                      "strings_where_schema_says_float", "single_class", "split_leaves_class_absent_from_validation"}


@pytest.mark.parametrize("case", sampled(DATA_MISTAKES, CORE_DATA_MISTAKES))
def test_data_mistake_names_the_culprit_and_fails_the_run_cleanly(case, data_runs):
    proc, store = data_runs[case, ()]
    _, stage, names = DATA_MISTAKES[case]
    assert_one_error_line(proc, *names)
    assert_run_failed_cleanly(store, stage, names[0])


@pytest.mark.extended
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
JSON_CONFIG_CASES = ["unknown_key_suggests_model", "streaming_with_a_family_that_needs_memory", "seed_not_an_integer", "unknown_model_type_suggests_xgboost",
                     "sklearn_path_to_a_class_that_is_not_an_estimator"]


@pytest.mark.parametrize("case", sampled(JSON_CONFIG_CASES, {"unknown_key_suggests_model", "seed_not_an_integer"}))
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
# Silent wrong results turned into warnings: the run goes on, and says so.
# --------------------------------------------------------------------------------------------------
def test_an_empty_column_is_dropped_with_a_warning_and_inf_as_missing_runs_and_predicts(bc_config, write_config,
                                                                                       run_store, cli, tmp_path):
    bc = breast_cancer()
    gaps = bc.assign(never_measured=np.nan, mean_radius=np.where(np.arange(len(bc)) == 7, np.inf, bc["mean_radius"]))
    gaps.to_parquet(tmp_path / "bc_gaps.parquet", index=False)
    _data(bc_config, tmp_path / "bc_gaps.parquet", infinite="missing")
    path = write_config(bc_config)
    proc = cli("run", str(path), cwd=path.parent)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stdout.splitlines() if "warning:" in line]
    assert sum("'never_measured'" in line for line in warnings) == 2, proc.stdout  # validate and features
    (run_dir,) = (run_store / "runs").iterdir()
    features = json.loads((run_dir / "features" / "manifest.json").read_text())["summary"]
    assert features["empty"] == ["never_measured"] and "never_measured" in features["dropped"]
    report = json.loads((run_dir / "validate" / "report.json").read_text())
    assert [w["column"] for w in report["warnings"] if w["check"] == "all_missing"] == ["never_measured"]

    out = tmp_path / "scored.parquet"  # the packaged model treats inf as missing too
    proc = cli("predict", run_dir.name, str(tmp_path / "bc_gaps.parquet"), "--out", str(out), "--store", str(run_store))
    assert proc.returncode == 0, proc.stderr
    scored = pd.read_parquet(out)
    assert len(scored) == len(bc) and scored.filter(like="proba_").notna().all().all()


@pytest.mark.extended
def test_a_tiny_table_warns_in_the_split_summary_and_predict_names_an_infinite_column(bc_config, write_config,
                                                                                   run_store, cli, cli_json,
                                                                                   tmp_path, bad_data):
    """Issue 10: a 25-row table was trained on 4 test rows (AUC 1.0) and registered without a word."""
    tiny = breast_cancer().groupby("diagnosis", group_keys=False).head(13).iloc[:25]
    tiny.to_parquet(tmp_path / "tiny.parquet", index=False)
    _data(bc_config, tmp_path / "tiny.parquet")
    bc_config["gates"] = {"min_test_rows": 4}  # the gate's own refusal is tested below; here the run must finish
    path = write_config(bc_config)
    code, doc = cli_json("run", str(path), cwd=path.parent)
    assert code == 0, doc
    split = next(s for s in doc["stages"] if s["name"] == "split")["summary"]
    assert any(w.startswith("split.test: the test split has only") for w in split["warning_messages"]), split
    assert any("fewer than 10 rows in the test split" in w for w in split["warning_messages"]), split

    proc = cli("predict", doc["run_id"], str(bad_data / "inf_radius.parquet"), "--out", str(tmp_path / "p.parquet"),
               "--store", str(run_store))
    assert_one_error_line(proc, "inf_radius.parquet", "'mean_radius'", "infinite")
    assert not (tmp_path / "p.parquet").exists()


# --------------------------------------------------------------------------------------------------
# `trainpipe report` and `runs compare --html`: a wrong run id or output path is one line, exit 2.
# --------------------------------------------------------------------------------------------------
def test_report_of_an_unknown_run_names_the_run_and_the_store_and_writes_nothing(store, cli):
    proc = cli("report", "20990101-000000-abcdef", "--store", str(store))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and "'20990101-000000-abcdef'" in errors[0] and str(store) in errors[0]
    assert not store.exists()


def test_report_and_compare_into_a_folder_name_the_option(report_runs, tmp_path, cli):
    run = report_runs.get("binary")
    store = str(report_runs.store)
    proc = cli("report", run.name, "--store", store, "--out", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.startswith("error: --out:") and "is a folder" in proc.stderr
    proc = cli("runs", "compare", run.name, run.name, "--store", store, "--html", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.startswith("error: --html:") and "is a folder" in proc.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------
# Run ids: one pattern (docs/operations.md), refused before any work by every option that takes one,
# so no id reaches a path outside <store>/runs/.
# --------------------------------------------------------------------------------------------------
# (CLI arguments, with {config} and {outside} filled in; the option the error line must name)
RUN_ID_MISTAKES = {
    "run_id_climbing_out_of_the_store": (["run", "{config}", "--run-id", "../../escaped"], "--run-id"),
    "run_id_absolute_path": (["run", "{config}", "--run-id", "{outside}"], "--run-id"),
    "run_id_with_a_slash": (["run", "{config}", "--run-id", "a/b"], "--run-id"),
    "run_id_with_a_newline": (["run", "{config}", "--run-id", "a\nb"], "--run-id"),
    "run_id_with_a_semicolon": (["run", "{config}", "--run-id", "a;touch pwned"], "--run-id"),
    "run_id_starting_with_a_dash": (["run", "{config}", "--run-id=-rf"], "--run-id"),
    "run_id_dot_dot": (["run", "{config}", "--run-id", ".."], "--run-id"),
    "resume_climbing_out_of_the_store": (["run", "--resume", "../../escaped"], "--resume"),
    "resume_absolute_path": (["run", "--resume", "{outside}"], "--resume"),
    "stage_run_absolute_path": (["stage", "ingest", "--run", "{outside}", "--config", "{config}"], "--run"),
    "stage_run_climbing_out_of_the_store": (["stage", "train", "--run", "../escaped"], "--run"),
}


@pytest.mark.parametrize("case", sampled(RUN_ID_MISTAKES, {"run_id_climbing_out_of_the_store", "run_id_with_a_newline",
                                                             "resume_climbing_out_of_the_store",
                                                             "stage_run_absolute_path"}))
def test_a_run_id_that_is_not_a_plain_name_is_refused_naming_its_option(case, bc_config, write_config, store, cli,
                                                                        tmp_path):
    args, option = RUN_ID_MISTAKES[case]
    config, outside = write_config(bc_config), tmp_path / "outside" / "run"
    proc = cli(*(a.format(config=config, outside=outside) for a in args), cwd=tmp_path)
    assert_one_error_line(proc, f"{option}: ", "is not a run id")
    assert_no_run_started(store)
    assert not outside.exists() and not (tmp_path / "escaped").exists() and not (store / "escaped").exists()


@pytest.mark.extended
def test_resume_refuses_a_run_folder_that_is_a_symlink_out_of_the_store(bc_config, write_config, run_store, cli,
                                                                       tmp_path):
    proc = cli("run", str(write_config(bc_config)), "--run-id", "elsewhere", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shutil.move(run_store / "runs" / "elsewhere", tmp_path / "moved")  # a complete run, outside the store
    (run_store / "runs" / "planted").symlink_to(tmp_path / "moved")
    proc = cli("run", "--resume", "planted", cwd=tmp_path)
    assert_one_error_line(proc, "--resume: ", "outside")


# --------------------------------------------------------------------------------------------------
# Command-line mistakes outside `run`: predict, models, runs, stage, --resume.
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registered(data_dir, migrated_mlflow_db, tmp_path_factory) -> dict:
    """One store holding run `r1`, registered as model `bc` v1 @champion, plus a run folder without run.json
    (`half`, as a creation killed before run.json leaves it) and a closed port for an unreachable server."""
    import socket

    folder = tmp_path_factory.mktemp("registered")
    store = seed_store(folder / "store", migrated_mlflow_db)
    doc = {"name": "bc", "task": "binary", "store": str(store),
           "data": {"path": str(data_dir / "bc.parquet"), "target": "diagnosis", "positive_class": "malignant"},
           "model": {"type": "xgboost", "params": {"n_estimators": 20, "max_depth": 3}}, "training": {"threads": 1}}
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "trainpipe", "run", str(folder / "pipeline.yaml"), "--run-id", "r1"],
                          capture_output=True, text=True, cwd=folder, timeout=240, check=False,
                          env={**os.environ, "TRAINPIPE_HOME": str(store)})
    assert proc.returncode == 0, proc.stderr
    (store / "runs" / "half").mkdir()
    with socket.socket() as probe:  # bound then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return {"store": store, "config": folder / "pipeline.yaml", "data": str(data_dir / "bc.parquet"),
            "package": str(store / "runs" / "r1" / "register" / "model"), "server": f"http://127.0.0.1:{port}"}


def _predict(model: str, *extra: str):
    return lambda r, work: ["predict", model, r["data"], "--out", str(work / "p.parquet"), *extra]


def _corrupt_parquet(work: Path) -> str:
    (work / "x.parquet").write_bytes(b"PAR1" + bytes(500))
    return str(work / "x.parquet")


# (CLI arguments given the `registered` fixture and an empty work folder, names the error line must contain)
CLI_MISTAKES = {
    "predict_model_folder_that_does_not_exist": (lambda r, work: _predict(str(work / "nope"))(r, work),
                                                 ["nope", "no such folder"]),
    "predict_model_relative_path_that_does_not_exist": (_predict("./nope"), ["'./nope'", "no such folder"]),
    "predict_model_http_uri": (_predict("http://example.com/model"), ["'http://example.com/model'", "http://"]),
    "predict_model_name_neither_run_folder_nor_registered": (_predict("nosuchthing"),
                                                             ["'nosuchthing'", "not a run", "not a folder",
                                                              "no registered model"]),
    "predict_model_ref_with_slashes_in_the_name": (_predict("models:/a/b/c"), ["'models:/a/b/c'", "NAME/VERSION"]),
    "predict_run_folder_without_run_json": (_predict("half"), ["half", "no run.json", "not a trainpipe run"]),
    "predict_out_is_an_existing_folder": (lambda r, work: ["predict", "r1", r["data"], "--out", str(work)],
                                          ["--out", "is a folder"]),
    "predict_out_below_a_file": (lambda r, work: ["predict", "r1", r["data"], "--out", r["data"] + "/p.parquet"],
                                 ["--out", "bc.parquet is a file"]),
    "predict_chunk_rows_zero": (_predict("r1", "--chunk-rows", "0"), ["--chunk-rows", "at least 1", "got 0"]),
    "predict_chunk_rows_negative": (_predict("r1", "--chunk-rows", "-5"), ["--chunk-rows", "got -5"]),
    "predict_data_is_a_folder": (lambda r, work: ["predict", "r1", str(work), "--out", str(work / "p.parquet")],
                                 ["is a folder, not a file"]),
    "predict_data_corrupt_parquet": (lambda r, work: ["predict", "r1", _corrupt_parquet(work), "--out",
                                                      str(work / "p.parquet")], ["x.parquet", "Parquet"]),
    "predict_unreachable_tracking_server": (lambda r, work: _predict("models:/bc@champion", "--tracking-uri",
                                                                     r["server"])(r, work),
                                            ["--tracking-uri", "cannot reach"]),
    "promote_version_not_a_number": (lambda r, work: ["models", "promote", "bc", "abc"], ["VERSION", "'abc'"]),
    "promote_expect_not_a_number": (lambda r, work: ["models", "promote", "bc", "1", "--expect", "v1"],
                                    ["--expect", "'v1'"]),
    "describe_version_not_a_number": (lambda r, work: ["models", "describe", "bc/abc"], ["'bc/abc'", "NAME/VERSION"]),
    "history_name_with_a_slash": (lambda r, work: ["models", "history", "a/b"], ["'a/b'", "'/'"]),
    "list_versions_of_a_name_with_a_colon": (lambda r, work: ["models", "list", "a:b"], ["'a:b'"]),
    "rollback_unknown_model": (lambda r, work: ["models", "rollback", "nope"], ["'nope'", "no registered model"]),
    "models_list_unreachable_tracking_server": (lambda r, work: ["models", "list", "--tracking-uri", r["server"]],
                                                ["--tracking-uri", "cannot reach"]),
    "runs_list_limit_negative": (lambda r, work: ["runs", "list", "--limit", "-1"], ["--limit", "got -1"]),
    "runs_list_limit_zero": (lambda r, work: ["runs", "list", "--limit", "0"], ["--limit", "got 0"]),
    "runs_list_unreachable_tracking_server": (lambda r, work: ["runs", "list", "--tracking-uri", r["server"]],
                                              ["--tracking-uri", "cannot reach"]),
    "runs_list_unsupported_tracking_uri": (lambda r, work: ["runs", "list", "--tracking-uri", "nonsense://x"],
                                           ["--tracking-uri", "nonsense://x"]),
    "runs_compare_id_with_a_quote": (lambda r, work: ["runs", "compare", "r1", "a'b"], ["a'b", "not a run id"]),
    "runs_compare_unknown_id": (lambda r, work: ["runs", "compare", "r1", "nope"], ["'nope'"]),
    "recommend_out_is_an_existing_folder": (
        lambda r, work: ["recommend", "r1", "--users", r["data"], "--out", str(work)], ["--out", "is a folder"]),
    "schema_infer_out_is_an_existing_folder": (lambda r, work: ["schema", "infer", r["data"], "--out", str(work)],
                                               ["--out", "is a folder"]),
    "ui_port_out_of_range": (lambda r, work: ["ui", "--port", "-5"], ["--port", "-5"]),
    "stage_of_a_run_folder_without_run_json": (lambda r, work: ["stage", "train", "--run", "half"],
                                               ["'half'", "no run.json", "not a trainpipe run"]),
    "resume_a_run_folder_without_run_json": (lambda r, work: ["run", "--resume", "half"],
                                             ["'half'", "no run.json", "not a trainpipe run"]),
    "runs_gc_stale_after_zero": (lambda r, work: ["runs", "gc", "--stale-after", "0"], ["--stale-after", "got 0"]),
    "runs_gc_unreachable_tracking_server": (lambda r, work: ["runs", "gc", "--tracking-uri", r["server"]],
                                            ["--tracking-uri", "cannot reach"]),
    "set_key_with_a_newline_and_broken_yaml": (lambda r, work: ["run", str(r["config"]), "--set", "a\nb=[1,"],
                                               ["--set", "not valid YAML"]),
    "set_without_equals": (lambda r, work: ["run", str(r["config"]), "--set", "model.type"], ["--set", "key.path=value"]),
}


def _files(*folders: Path) -> set[str]:
    return {str(p) for folder in folders for p in folder.rglob("*")}


# make test: one or two per command; the rest with make extended
CORE_CLI_MISTAKES = {"predict_model_folder_that_does_not_exist", "predict_data_corrupt_parquet", "promote_version_not_a_number",
                     "runs_list_unreachable_tracking_server", "stage_of_a_run_folder_without_run_json",
                     "set_without_equals"}


@pytest.mark.parametrize("case", sampled(CLI_MISTAKES, CORE_CLI_MISTAKES))
def test_cli_mistake_is_one_line_naming_the_option_and_leaves_nothing_behind(case, registered, tmp_path, cli):
    args, names = CLI_MISTAKES[case]
    store = registered["store"]
    argv = args(registered, tmp_path)
    before = _files(store / "runs", tmp_path)
    proc = cli(*argv, cwd=tmp_path, env={"TRAINPIPE_HOME": str(store)}, timeout=60)
    assert_one_error_line(proc, *names)
    assert _files(store / "runs", tmp_path) == before, "files left behind"


def test_stage_of_a_run_that_never_existed_names_the_active_stages_not_tune(registered, tmp_path, cli):
    """Tuning is off in this config: the missing stage is features, and the run starts with ingest."""
    proc = cli("stage", "train", "--run", "neverexisted", "--config", str(registered["config"]), cwd=tmp_path)
    line = assert_one_error_line(proc, "needs stage features", "stage ingest --run neverexisted")
    assert "tune" not in line
    proc = cli("stage", "train", "--run", "neverexisted", "--store", str(registered["store"]), cwd=tmp_path)
    assert "tune" not in assert_one_error_line(proc, "stage ingest")
    assert not (registered["store"] / "runs" / "neverexisted").exists()


@pytest.mark.parametrize("as_path", sampled(["absolute", "relative"], {"relative"}))
def test_predict_reads_an_existing_package_folder_as_a_path_not_a_run_id(as_path, registered, tmp_path, cli_json):
    package = Path(registered["package"])
    model = str(package) if as_path == "absolute" else os.path.relpath(package, tmp_path)
    code, doc = cli_json("predict", model, registered["data"], "--out", str(tmp_path / "p.parquet"),
                         "--store", str(registered["store"]), cwd=tmp_path)
    assert code == 0, doc
    assert doc["model"] == model and doc["rows"] == 569


# --------------------------------------------------------------------------------------------------
# Too little data to judge: the gate refuses (exit 3), nothing is registered.
# --------------------------------------------------------------------------------------------------
@pytest.mark.extended
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
