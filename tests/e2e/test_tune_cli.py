"""`trainpipe tune` in real subprocesses: the JSON summary, bad search spaces, and a SIGKILL mid-study."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

SPACE = {"learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
         "max_depth": {"type": "int", "low": 2, "high": 6}}


def test_tune_json_prints_the_study_and_the_registered_version(cli_json, write_config, bc_config):
    config = {**bc_config, "tuning": {"space": SPACE}}
    code, doc = cli_json("tune", str(write_config(config)), "--trials", "3", "--set", "tuning.plots=false")
    assert code == 0, doc
    study = doc["study"]
    assert study["study"].startswith("bc-") and study["storage"].endswith("/optuna.db")
    assert sum(study["trials"].get(s, 0) for s in ("COMPLETE", "PRUNED")) >= 3 and study["stopped_by"] == "n_trials"
    assert set(study["best_params"]) <= set(SPACE) and 0.9 < study["best_value"] <= 1.0
    assert str(doc["registered_version"]) == "1" and doc["run_id"]
    assert [s["name"] for s in doc["stages"]][3:6] == ["features", "tune", "train"]


def test_a_bad_search_space_is_one_line_and_exit_2(cli, write_config, bc_config):
    unknown = {**bc_config, "tuning": {"space": {"max_dept": {"type": "int", "low": 2, "high": 6}}}}
    proc = cli("tune", str(write_config(unknown)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: tuning.space.max_dept: xgboost has no parameter 'max_dept' (did you mean 'max_depth'?)"]
    assert not (Path(bc_config["store"]) / "runs").exists()  # refused before any run folder or data read


def trial_states(db) -> list[tuple[int, str, int]]:
    """(number, state, has all its parameters and its worker) of every trial, read while the study runs (Optuna
    stores the parameters one by one as they are sampled: a kill between two would leave a trial half-sampled)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as connection:
            return connection.execute(
                "SELECT number, state, (SELECT COUNT(*) FROM trial_params p WHERE p.trial_id = t.trial_id) >= "
                f"{len(SPACE)} AND "
                "(SELECT COUNT(*) FROM trial_user_attributes a WHERE a.trial_id = t.trial_id AND a.key = 'worker') > 0 "
                "FROM trials t ORDER BY number").fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []


def test_a_killed_tune_resumes_the_same_study_without_repeating_finished_trials(cli_json, write_config, bc_config,
                                                                                store, tmp_path):
    # ~0.3 s trials (300 rounds, no early stopping or pruning), so the kill lands inside one.
    config = {**bc_config, "model": {"type": "xgboost", "params": {"n_estimators": 300}},
              "training": {"early_stopping_rounds": None, "threads": 1},
              "tuning": {"space": SPACE, "n_trials": 4, "pruner": {"type": "none"}, "heartbeat_interval": 1,
                         "grace_period": 3, "plots": False}}
    path = write_config(config)
    db = store / "optuna.db"
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen([sys.executable, "-m", "trainpipe", "tune", str(path)], stdout=log, stderr=log,
                                 env={**os.environ, "COLUMNS": "200"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = trial_states(db)
            # kill mid-training: a trial RUNNING with its parameters sampled, after two have finished
            if (sum(s == "COMPLETE" for _, s, _ in states) >= 2
                    and any(s == "RUNNING" and ready for _, s, ready in states)):
                break
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()

    name = optuna.get_all_study_names(f"sqlite:///{db}")[0]
    before = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials
    done = {t.number: (t.params, t.datetime_complete) for t in before if t.state.name == "COMPLETE"}
    killed = [t.number for t in before if t.state.name == "RUNNING"]
    assert len(done) >= 2 and len(killed) == 1 and len(done) < 4

    code, doc = cli_json("tune", str(path))
    assert code == 0, doc
    assert doc["study"]["study"] == name and doc["study"]["stopped_by"] == "n_trials"
    after = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials
    for number, (params, completed) in done.items():  # finished trials are kept as they were, not run again
        assert after[number].state.name == "COMPLETE" and after[number].params == params
        assert after[number].datetime_complete == completed
    assert after[killed[0]].state.name == "FAIL"
    retries = [t for t in after if t.system_attrs.get("failed_trial") == killed[0]]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE" and retries[0].params == after[killed[0]].params
    assert sum(t.state.name == "COMPLETE" for t in after) == 4
    new = [t for t in after if t.number not in done and t.number != killed[0]]
    assert len(new) == 4 - len(done)  # only the missing trials ran, the killed one among them

    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    parent = client.get_run(optuna.load_study(study_name=name, storage=f"sqlite:///{db}").user_attrs[
        "mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED"
    trials = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    # every trial has its run, none left RUNNING by the kill: those the killed process had not logged yet and
    # the killed trial itself (FAILED) were logged by the rerun
    statuses = {int(r.data.tags["optuna.trial_number"]): r.info.status for r in trials}
    assert statuses == {t.number: "FAILED" if t.number == killed[0] else "FINISHED" for t in after}


@pytest.mark.slow
@pytest.mark.timeout(900)  # 20 processes, ~60 s per repetition on a loaded 2-core machine
@pytest.mark.parametrize("repetitions", [1, pytest.param(5, marks=pytest.mark.reliability)])  # make test: one
def test_four_tunes_started_at_once_on_a_fresh_store_all_succeed(repetitions, tmp_path, data_dir):
    """Optuna's tables, the study and its MLflow parent run are created once, under a lock, whoever starts
    first: before, most of the processes failed on `table ... already exists` (issue 10, item 3). `--join`
    stops each after its tune stage: everything a tune does at start-up, without four trainings and
    registrations (whole pipelines at once: tests/integration/test_registry_concurrency.py)."""
    import pandas as pd

    frame = pd.read_parquet(data_dir / "bc.parquet")
    failures = []
    for repetition in range(repetitions):
        store = tmp_path / f"store{repetition}"
        paths = []
        for i in range(4):
            # Each process its own rows (one dropped), so the runs share no cached stage: this test is about the
            # study storage, not about two runs writing one cache entry.
            frame.drop(index=i).to_parquet(tmp_path / f"bc{i}.parquet", index=False)
            config = {"name": "bc", "task": "binary", "store": str(store), "seed": i,
                      "data": {"path": str(tmp_path / f"bc{i}.parquet"), "target": "diagnosis",
                               "positive_class": "malignant"},
                      "model": {"type": "xgboost", "params": {"n_estimators": 10}},
                      "training": {"early_stopping_rounds": None, "threads": 1},
                      "tuning": {"n_trials": 2, "plots": False, "study_name": "shared", "space": SPACE},
                      "gates": {"champion": {"enabled": False}}}
            paths.append(tmp_path / f"p{i}.yaml")
            paths[-1].write_text(yaml.safe_dump(config))
        procs = [subprocess.Popen([sys.executable, "-m", "trainpipe", "tune", str(p), "--join", "--json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for p in paths]
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            if proc.returncode != 0:
                failures.append(f"repetition {repetition}: exit {proc.returncode}: {out.strip()[-300:]} {err[-300:]}")
        if (store / "optuna.db").exists():
            study = optuna.load_study(study_name="shared", storage=f"sqlite:///{store}/optuna.db")
            assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials) >= 2
            client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
            parents = client.search_runs([client.get_experiment_by_name("bc").experiment_id],
                                         "tags.`optuna.study` = 'shared' and tags.`trainpipe.stage` = 'tune'")
            assert [r.info.run_id for r in parents] == [study.user_attrs["mlflow_parent_run_id"]]  # one per study
    assert failures == []


def run_on_a_terminal(*args: str, timeout: float = 300) -> tuple[int, str, str]:
    """`trainpipe ARGS` with stderr on a pseudo-terminal (as in an interactive shell) and stdout on a pipe:
    (exit code, stdout, everything written to the terminal)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "trainpipe", *args], stdout=subprocess.PIPE, stderr=slave,
                            env={**os.environ, "COLUMNS": "200", "TERM": "xterm"})
    os.close(slave)
    chunks = []
    while True:  # until the process closes the terminal
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read().decode()
    proc.wait(timeout=timeout)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


@pytest.mark.extended
def test_tune_shows_trials_and_rounds_live_on_a_terminal_and_nothing_of_it_with_json(write_config, bc_config):
    config = str(write_config({**bc_config, "tuning": {"space": SPACE, "plots": False}}))
    code, out, terminal = run_on_a_terminal("tune", config, "--trials", "2")
    assert code == 0, out + terminal
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", terminal)
    assert re.search(r"tuning trial .* [0-2]/2 ", plain)  # trials done, live
    # best so far: on the live line when a refresh (4 per second) falls after the first trial; on an idle machine
    # two trials can end before that, and the summary then carries it
    assert "best roc_auc" in plain or "best roc_auc" in out
    assert re.search(r"xgboost round .* \d+/40 .*validation_log_loss", plain) and "eta" in plain  # train's rounds
    assert "tuning trial" not in out and "round" not in out  # stdout keeps only the summary

    code, out, terminal = run_on_a_terminal("tune", config, "--trials", "3", "--json")
    assert code == 0 and json.loads(out)["study"]["finished"] >= 3
    assert "tuning trial" not in terminal and "round" not in terminal
    assert "\x1b[?25l" not in terminal  # no live display ever started (it hides the cursor)


@pytest.mark.extended
def test_tune_off_a_terminal_prints_no_live_line(cli, write_config, bc_config):
    proc = cli("tune", str(write_config({**bc_config, "tuning": {"space": SPACE, "plots": False}})), "--trials", "1")
    assert proc.returncode == 0, proc.stderr
    assert "tuning trial" not in proc.stderr + proc.stdout and "xgboost round" not in proc.stderr + proc.stdout


@pytest.mark.extended
def test_tune_on_an_init_config_searches_the_whole_default_space_and_names_fixed_params(cli, cli_json, tmp_path,
                                                                                          data_dir, store):
    code, _ = cli_json("init", str(tmp_path / "proj"), "--data", str(data_dir / "bc.parquet"), "--target", "diagnosis")
    assert code == 0
    pipeline = str(tmp_path / "proj" / "pipeline.yaml")
    fast = ["--set", "model.params.n_estimators=15", "--set", "tuning.plots=false", "--trials", "1", "--join"]
    code, doc = cli_json("tune", pipeline, *fast)
    assert code == 0, doc
    assert set(doc["study"]["best_params"]) == {"learning_rate", "max_depth", "min_child_weight", "subsample",
                                                "colsample_bytree", "reg_lambda"}  # all six, none pinned by init
    assert doc["study"]["fixed_params"] == {}

    proc = cli("tune", pipeline, *fast, "--set", "model.params.max_depth=3")
    assert proc.returncode == 0, proc.stderr
    assert "fixed by model.params, not searched: max_depth=3" in proc.stdout


@pytest.mark.extended
def test_tune_with_store_on_the_command_line_logs_its_trials_there(cli_json, write_config, bc_config, store, tmp_path,
                                                                    monkeypatch):
    """The trial logger opened the config's store (here: none, so $TRAINPIPE_HOME) instead of --store, and the
    study's MLflow experiment did not exist there: `internal error: No Experiment with id=1 exists`."""
    monkeypatch.setenv("TRAINPIPE_HOME", str(tmp_path / "elsewhere"))
    config = {k: v for k, v in bc_config.items() if k != "store"}
    config["tuning"] = {"space": SPACE, "plots": False}
    code, doc = cli_json("tune", str(write_config(config)), "--trials", "2", "--store", str(store))
    assert code == 0, doc
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    study = optuna.load_study(study_name=doc["study"]["study"], storage=f"sqlite:///{store}/optuna.db")
    trials = client.search_runs([client.get_experiment_by_name("bc").experiment_id],
                                f"tags.`mlflow.parentRunId` = '{study.user_attrs['mlflow_parent_run_id']}'")
    assert len(trials) == doc["study"]["finished"]
    assert not (tmp_path / "elsewhere" / "mlflow.db").exists()
