"""Concurrency on the shared services: 2 `trainpipe tune` processes on one PostgreSQL study, and champion
promotion from 4 processes through the tracking server with no lost or duplicated move."""

from __future__ import annotations

import collections
import json
import subprocess
import sys

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.integration import promotion_race
from trainpipe.team.services import _read_pgpass

pytestmark = pytest.mark.team


@pytest.mark.extended
def test_four_processes_promoting_through_the_server_lose_and_duplicate_no_move(team, tmp_path):
    store = str(tmp_path / "store")
    promotion_race.prepare(team.tracking_uri, store, "race_server", 4)
    results = promotion_race.collect(promotion_race.start_workers(team.tracking_uri, store, "race_server",
                                                                  workers=4, moves=2))
    moves = promotion_race.check(team.tracking_uri, store, "race_server", results)
    assert len(moves) == sum(len(r["made"]) for r in results) == 4 * 2


@pytest.mark.extended
def test_two_tune_processes_share_one_postgresql_study(team, bc_config, write_config, monkeypatch):
    import optuna

    config = write_config({**bc_config, "name": "bc_tune_server", "tracking": {"uri": team.tracking_uri},
                           "model": {"type": "xgboost", "params": {"n_estimators": 30}},
                           "tuning": {"storage": team.optuna_storage, "n_trials": 500, "plots": False,
                                      "pruner": {"type": "none"},
                                      "space": {"max_depth": {"type": "int", "low": 2, "high": 6}}}})
    # as two machines would: the first trains and registers the best, the second only adds trials (--join);
    # each spends 5 s on trials (a trial count could all be done by one before the other has started)
    commands = [[str(config), "--timeout", "5"], [str(config), "--join", "--timeout", "5"]]
    procs = [subprocess.Popen([sys.executable, "-m", "trainpipe", "tune", *args, "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=team.env) for args in commands]
    outputs = [p.communicate(timeout=300) for p in procs]
    docs = [json.loads(out) for out, _ in outputs]
    assert [p.returncode for p in procs] == [0, 0], [(d.get("error"), err[-1500:]) for d, (_, err) in zip(docs, outputs)]
    assert docs[0]["study"]["study"] == docs[1]["study"]["study"]
    assert docs[0]["registered_version"] == "1" and docs[1]["registered_version"] is None

    monkeypatch.setenv("PGPASSFILE", str(team.pgpass))
    study = optuna.load_study(study_name=docs[0]["study"]["study"], storage=team.optuna_storage)
    workers = collections.Counter(t.user_attrs.get("worker") for t in study.trials)
    assert len(workers) == 2, workers  # both processes ran trials of the one study
    assert all(doc["study"]["workers"][0]["trials_run"] >= 1 for doc in docs)
    assert sum(workers.values()) == sum(doc["study"]["workers"][0]["trials_run"] for doc in docs)
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert docs[0]["study"]["storage"] == team.optuna_storage  # no password to hide: it is in PGPASSFILE

    # no password anywhere trainpipe records: the run folders, MLflow params and tags of the runs and trials
    passwords = [pw.encode() for pw in _read_pgpass(team.pgpass).values()]
    leaks = [str(path) for path in Path(bc_config["store"]).rglob("*") if path.is_file()
             and any(pw in path.read_bytes() for pw in passwords)]
    client = MlflowClient(tracking_uri=team.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("bc_tune_server").experiment_id])
    recorded = [json.dumps([r.data.params, r.data.tags]).encode() for r in runs]
    assert len(runs) > 2 and not leaks and not [r for r in recorded for pw in passwords if pw in r]
