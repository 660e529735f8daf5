"""trainpipe under a real Airflow 3.3: DAG files written by `trainpipe airflow dag`, checked by
`airflow dags list-import-errors`, run by `airflow dags test` (no scheduler, no webserver), with the task
states read back from Airflow's own metadata database. Each Airflow home is a temp folder with SQLite and
no example DAGs. The three DAG runs start together (each in its own Airflow home and pipeline folder) so
that they share the machine's two cores instead of queueing.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import selected_tests
from trainpipe.tools.datasets import breast_cancer
from trainpipe.orchestration.airflow import DAG_FILE
from trainpipe.orchestration.trigger import run_id_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
STAGES = ["ingest", "validate", "split", "features", "train", "evaluate", "drift", "gate", "register", "report"]
DAG_RUN_TIMEOUT = 600


def airflow_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TRAINPIPE_HOME"))}
    return {**env, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory) -> Path:
    """One `airflow db migrate`; every Airflow home below starts from a copy of its database."""
    home = tmp_path_factory.mktemp("airflow-template")
    proc = subprocess.run([AIRFLOW, "db", "migrate"], env=airflow_env(home), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return home / "airflow.db"


def new_home(migrated_db: Path, folder: Path) -> dict:
    (folder / "dags").mkdir(parents=True)
    shutil.copy(migrated_db, folder / "airflow.db")
    return airflow_env(folder)


def write_pipeline(folder: Path, **sections) -> Path:
    """The breast-cancer pipeline in its own folder; its store is the default ./.trainpipe beside the YAML."""
    folder.mkdir(parents=True, exist_ok=True)
    breast_cancer().to_parquet(folder / "bc.parquet", index=False)
    doc = {"name": "bc", "task": "binary",
           "data": {"path": "bc.parquet", "target": "diagnosis", "positive_class": "malignant"},
           "model": {"type": "xgboost", "params": {"n_estimators": 40, "max_depth": 3}},
           "training": {"early_stopping_rounds": 10, "threads": 1},
           "orchestration": {"retries": 2, "retry_delay": 2}, **sections}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def trainpipe(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainpipe", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def write_dag(config: Path, env: dict, *args: str) -> str:
    proc = trainpipe("airflow", "dag", str(config), *args, env=env)
    assert proc.returncode == 0, proc.stderr
    dag_id = args[args.index("--dag-id") + 1] if "--dag-id" in args else "bc"
    Path(env["AIRFLOW__CORE__DAGS_FOLDER"], f"{dag_id}.py").write_text(proc.stdout)
    return dag_id


@dataclass
class DagRun:
    returncode: int
    output: str
    state: str
    tasks: dict  # task id -> (state, try number)
    xcom_tasks: set
    store: Path

    @property
    def run_id(self) -> str:
        (run,) = [p for p in (self.store / "runs").iterdir() if (p / "run.json").exists()]
        return run.name


def read_back(env: dict, proc: subprocess.Popen, log: Path, store: Path) -> DagRun:
    with sqlite3.connect(Path(env["AIRFLOW_HOME"], "airflow.db")) as db:
        ((run_id, state),) = db.execute("select run_id, state from dag_run").fetchall()
        tasks = {t: (s, n) for t, s, n in db.execute(
            "select task_id, state, try_number from task_instance where run_id = ?", (run_id,))}
        xcom = {t for (t,) in db.execute("select distinct task_id from xcom where run_id = ?", (run_id,))}
    return DagRun(proc.returncode, log.read_text(), state, tasks, xcom, store)


def put_back_after_ingest_failed(store: Path, hidden: Path, data: Path, deadline: float) -> None:
    """The data file lands late: restore it as soon as the first ingest attempt has failed for want of it."""
    while time.monotonic() < deadline:
        for meta in store.glob("runs/*/run.json"):
            try:
                failed = json.loads(meta.read_text())["status"] == "failed"
            except (OSError, ValueError):
                continue
            if failed:
                hidden.rename(data)
                return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def dag_runs(request, migrated_db, tmp_path_factory) -> dict[str, DagRun]:
    """Up to three DAG runs at once, those the session's tests read: `retrained` (the data file is missing at
    first, then lands; a conf override), `rejected` (a conf override the model cannot pass at the gate),
    `bad_conf` (a conf value of the wrong type). `make test` runs `retrained`; `make extended` the other two."""
    root = tmp_path_factory.mktemp("dag-runs")
    scenarios = {"retrained": {"model": {"params": {"max_depth": 2}}},
                 "rejected": {"gates.min.test_roc_auc": 1.01},
                 "bad_conf": {"seed": "abc"}}
    tests = {item.originalname for item in selected_tests(request)}
    wanted = {scenario for test, scenario in SCENARIO_OF_TEST.items() if test in tests}
    started, watchers = {}, []
    for name, conf in scenarios.items():
        if name not in wanted:
            continue
        env = new_home(migrated_db, root / name / "airflow")
        config = write_pipeline(root / name / "pipeline")
        write_dag(config, env)
        store = config.parent / ".trainpipe"
        if name == "retrained":
            hidden = config.parent / "bc.parquet.late"
            (config.parent / "bc.parquet").rename(hidden)
            watcher = threading.Thread(target=put_back_after_ingest_failed, daemon=True,
                                       args=(store, hidden, config.parent / "bc.parquet",
                                             time.monotonic() + DAG_RUN_TIMEOUT))
            watcher.start()
            watchers.append(watcher)
        log = root / name / "dags-test.log"
        with log.open("w") as out:
            proc = subprocess.Popen([AIRFLOW, "dags", "test", "bc", "--conf", json.dumps(conf)], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        started[name] = (env, proc, log, store)
    for env, proc, log, store in started.values():
        try:
            proc.wait(timeout=DAG_RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {name: read_back(*args) for name, args in started.items()}


SCENARIO_OF_TEST = {
    "test_a_dag_run_trains_and_registers_a_model_version_with_the_trigger_overrides": "retrained",
    "test_a_stage_that_failed_once_succeeds_on_its_task_retry": "retrained",
    "test_a_gate_failure_skips_register_without_failing_the_dag_run_and_registers_nothing": "rejected",
    "test_a_bad_conf_override_fails_the_first_task_with_the_one_line_error": "bad_conf",
}


def registered_versions(store: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db", registry_uri=f"sqlite:///{store}/mlflow.db")
    return client.search_model_versions()


# -- the DAG file ----------------------------------------------------------------------------------------------
DESCRIBE = """
import json
from airflow.dag_processing.dagbag import DagBag

bag = DagBag()
out = {}
for dag_id, dag in bag.dags.items():
    task, order = dag.get_task("start"), []
    while task is not None:
        order.append(task.task_id)
        task = next(iter(task.downstream_list), None)
    asset = getattr(dag.timetable, "asset_condition", None)
    out[dag_id] = {
        "order": order, "timetable": type(dag.timetable).__name__, "asset": getattr(asset, "uri", None),
        "cron": getattr(dag.timetable, "expression", None), "catchup": dag.catchup,
        "tasks": {t.task_id: {"retries": t.retries, "retry_delay": t.retry_delay.total_seconds(),
                              "backoff": t.retry_exponential_backoff, "skip": sorted(t.skip_on_exit_code),
                              "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None}
                  for t in dag.tasks},
    }
print(json.dumps({"dags": out}))
"""


def test_list_import_errors_passes_generated_dags_and_reports_a_missing_yaml_in_one_line(migrated_db, tmp_path):
    env = new_home(migrated_db, tmp_path / "airflow")
    weekly = write_pipeline(tmp_path / "weekly", orchestration={"retries": 3, "retry_delay": 30, "timeout": 3600})
    write_dag(weekly, env, "--schedule", "@weekly", "--dag-id", "bc_weekly")
    dags = Path(env["AIRFLOW__CORE__DAGS_FOLDER"])  # three more from the same template (the CLI costs an import each)
    for dag_id, schedule, config in (
            ("bc_on_data", "asset", write_pipeline(tmp_path / "on_data")),
            ("bc_tuned", "0 3 * * 1", write_pipeline(tmp_path / "tuned", tuning={"enabled": True, "n_trials": 2})),
            ("bc_gone", None, tmp_path / "gone" / "pipeline.yaml")):
        (dags / f"{dag_id}.py").write_text(DAG_FILE.format(name="bc", tasks="", config=str(config), dag_id=dag_id,
                                                           schedule=schedule, catchup=False))

    proc = subprocess.run([AIRFLOW, "dags", "list-import-errors", "--local", "--output", "json"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # exit 1: some DAG file is broken
    (error,) = json.loads(proc.stdout.strip().splitlines()[-1])  # ... and only that one
    assert error["filepath"].endswith("dags/bc_gone.py")
    gone = tmp_path / "gone" / "pipeline.yaml"
    assert error["error"].rstrip().endswith(f"ConfigError: config file not found: {gone}")

    described = subprocess.run([sys.executable, "-c", DESCRIBE], env=env, capture_output=True, text=True, timeout=120)
    assert described.returncode == 0, described.stderr
    dags = json.loads(described.stdout.strip().splitlines()[-1])["dags"]
    assert sorted(dags) == ["bc_on_data", "bc_tuned", "bc_weekly"]
    assert dags["bc_weekly"]["order"] == ["start", *STAGES] and dags["bc_weekly"]["catchup"] is False
    assert dags["bc_weekly"]["cron"] == "0 0 * * 0"  # @weekly
    assert dags["bc_tuned"]["order"] == ["start", "ingest", "validate", "split", "features", "tune", "train",
                                         "evaluate", "drift", "gate", "register", "report"]
    assert dags["bc_tuned"]["cron"] == "0 3 * * 1"
    assert dags["bc_on_data"]["timetable"] == "AssetTriggeredTimetable"
    assert dags["bc_on_data"]["asset"] == (tmp_path / "on_data" / "bc.parquet").as_uri()
    tasks = dags["bc_weekly"]["tasks"]
    assert tasks["train"] == {"retries": 3, "retry_delay": 30.0, "backoff": 2.0, "skip": [], "timeout": 3600.0}
    assert tasks["start"]["retries"] == 0  # a wrong config does not fix itself
    assert tasks["gate"]["skip"] == [3] and all(tasks[s]["skip"] == [] for s in STAGES if s != "gate")


# -- DAG runs --------------------------------------------------------------------------------------------------
@pytest.mark.timeout(DAG_RUN_TIMEOUT + 300)
def test_a_dag_run_trains_and_registers_a_model_version_with_the_trigger_overrides(dag_runs):
    run = dag_runs["retrained"]
    assert run.returncode == 0 and run.state == "success", run.output[-3000:]
    assert {t: s for t, (s, _) in run.tasks.items()} == dict.fromkeys(["start", *STAGES], "success")
    meta = json.loads((run.store / "runs" / run.run_id / "run.json").read_text())
    assert meta["status"] == "completed"
    config = yaml.safe_load((run.store / "runs" / run.run_id / "config.yaml").read_text())
    assert config["model"]["params"]["max_depth"] == 2  # {"model": {"params": {"max_depth": 2}}}, typed
    (version,) = registered_versions(run.store)
    assert version.name == "bc" and version.tags["trainpipe.run_id"] == run.run_id
    assert run.xcom_tasks == {"start"}  # the run id is the only thing tasks pass


@pytest.mark.timeout(DAG_RUN_TIMEOUT + 300)
def test_a_stage_that_failed_once_succeeds_on_its_task_retry(dag_runs):
    run = dag_runs["retrained"]
    assert run.tasks["ingest"] == ("success", 2), run.tasks
    assert all(n == 1 for t, (_, n) in run.tasks.items() if t != "ingest")
    assert "error: data.path: file not found:" in run.output  # attempt 1's one-line reason, in the task log


@pytest.mark.extended
@pytest.mark.timeout(DAG_RUN_TIMEOUT + 300)
def test_a_gate_failure_skips_register_without_failing_the_dag_run_and_registers_nothing(dag_runs):
    run = dag_runs["rejected"]
    assert run.returncode == 0 and run.state == "success", run.output[-3000:]
    states = {t: s for t, (s, _) in run.tasks.items()}
    # the report runs after the skipped gate (trigger rule none_failed) and says why the model was blocked
    assert states == {**dict.fromkeys(["start", *STAGES[:-3]], "success"), "gate": "skipped", "register": "skipped",
                      "report": "success"}
    meta = json.loads((run.store / "runs" / run.run_id / "run.json").read_text())
    assert meta["status"] == "failed" and "gate failed" in meta["error"]
    assert "test_roc_auc" in (run.store / "runs" / run.run_id / "report" / "report.html").read_text()
    assert run.tasks["gate"][1] == 1  # a rejection is a decision, never retried
    assert "error: gate failed:" in run.output and "test_roc_auc" in run.output
    assert registered_versions(run.store) == []


@pytest.mark.extended
@pytest.mark.timeout(DAG_RUN_TIMEOUT + 300)
def test_a_bad_conf_override_fails_the_first_task_with_the_one_line_error(dag_runs):
    run = dag_runs["bad_conf"]
    assert run.returncode == 1 and run.state == "failed"
    assert run.tasks["start"] == ("failed", 1)  # not retried
    assert all(run.tasks[s][0] == "upstream_failed" for s in STAGES)
    assert "seed: Input should be a valid integer, unable to parse string as an integer (got 'abc')" in run.output
    assert not (run.store / "runs").exists()  # no run was started


# -- the first task and the generator, through the CLI -----------------------------------------------------------
@pytest.fixture
def cli_env(tmp_path) -> dict:
    return airflow_env(tmp_path / "airflow-home")  # `trainpipe airflow dag` imports Airflow: keep ~/airflow clean


def test_prepare_prints_the_dag_runs_trainpipe_run_id_last_and_creates_nothing(tmp_path, cli_env):
    config = write_pipeline(tmp_path / "pipe")
    dag_run_id = "manual__2026-11-30T11:49:59+00:00"
    proc = trainpipe("airflow", "prepare", str(config), "--dag-id", "bc", "--dag-run-id", dag_run_id,
                     "--stages", ",".join(STAGES), "--set", "seed=7", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == run_id_for("bc", dag_run_id)  # what Airflow keeps as the XCom
    assert not (config.parent / ".trainpipe").exists()  # it checks and names; ingest creates the run


@pytest.mark.parametrize("overrides, expected", [
    (["tuning.enabled=true"], "runs stages ingest, validate, split, features, tune, train"),
    (["name=${oc.env:HOME}"], "dag_run.conf: name: ${...} interpolation is not allowed"),
    (["model.params.max_dept=2"], "model.params.max_dept"),
])
def test_prepare_refuses_a_trigger_the_dag_cannot_run(tmp_path, cli_env, overrides, expected):
    config = write_pipeline(tmp_path / "pipe")
    sets = [w for item in overrides for w in ("--set", item)]
    proc = trainpipe("airflow", "prepare", str(config), "--dag-id", "bc", "--dag-run-id", "manual__1",
                     "--stages", ",".join(STAGES), *sets, env=cli_env)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected in line and "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, expected", [
    (["--schedule", "61 * * * *"], "error: --schedule: '61 * * * *' is not a cron expression"),
    (["--dag-id", "no spaces please"], "error: --dag-id: 'no spaces please' is not a valid Airflow DAG id"),
])
def test_dag_refuses_a_bad_schedule_or_dag_id_in_one_line_and_writes_nothing(tmp_path, cli_env, args, expected):
    config = write_pipeline(tmp_path / "pipe")
    proc = trainpipe("airflow", "dag", str(config), *args, env=cli_env)
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(expected), line
