"""The tune stage in-process with real Optuna storage and a real MLflow store: every family, then train uses
the best parameters; two worker processes share one study."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

from trainpipe.config import config_from_dict
from trainpipe.pipeline.driver import run_pipeline
from trainpipe.store import Store

TINY = {
    "xgboost": ({"n_estimators": 30, "max_depth": 3}, {"workers": 2}),
    "lightgbm": ({"n_estimators": 30, "min_child_samples": 5},
                 {"retrain_on": "train+validation", "pruner": {"type": "median", "n_startup_trials": 1}}),
    "sklearn": ({"max_iter": 15}, {"cv": {"folds": 3, "strategy": "stratified"}, "sampler": {"type": "random"}}),
    "torch_mlp": ({"epochs": 4, "hidden_dims": [8], "batch_size": 64},
                  {"space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
                             "hidden_dims": {"type": "categorical", "choices": [[8], [16, 8]]}}}),
}


def tune(bc_config: dict, family: str, **tuning) -> dict:
    params, extra = TINY[family]
    doc = {**bc_config, "model": {"type": family, "params": params},
           "tuning": {"enabled": True, "n_trials": 4, "plots": family == "xgboost", **extra, **tuning}}
    config = config_from_dict(doc)
    return run_pipeline(config, Store.locate(config.store))


def study_of(summary: dict):
    info = json.loads(Path(summary["run_dir"], "tune", "study.json").read_text())
    storage = f"sqlite:///{summary['store']}/optuna.db"
    return info, optuna.load_study(study_name=info["study"], storage=storage)


@pytest.mark.parametrize("family", sorted(TINY))
def test_tune_then_train_with_the_best_params_tracked_and_registered(bc_config, store, family):
    summary = tune(bc_config, family)
    assert summary["status"] == "completed" and [s["name"] for s in summary["stages"]][4:6] == ["tune", "train"]
    info, study = study_of(summary)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    workers = TINY[family][1].get("workers", 1)  # N workers may finish up to N-1 trials over n_trials (documented)
    assert 4 <= len(finished) <= 4 + workers - 1 and info["finished"] == len(finished) and info["stopped_by"] == "n_trials"
    assert all(t.intermediate_values for t in finished)  # rounds, epochs or folds were reported
    best = json.loads(Path(summary["run_dir"], "tune", "best_params.json").read_text())
    trained = json.loads(Path(summary["run_dir"], "train", "model", "family.json").read_text())["params"]
    for name, value in best["params"].items():
        assert trained[name] == value
    # the best trial's values as Optuna stored them; list choices (torch_mlp's hidden_dims) travel as JSON text
    stored = study.best_trial.params
    assert best["params"] == {k: json.loads(v) if isinstance(best["params"].get(k), list) else v
                              for k, v in stored.items()}
    if family == "torch_mlp":
        assert isinstance(best["params"]["hidden_dims"], list) and isinstance(stored["hidden_dims"], str)
    if family == "lightgbm":  # train + validation: the best trial's round count, no early stopping
        assert trained["n_estimators"] == best["best_iteration"] + 1
    if family == "xgboost":  # plots cost seconds of matplotlib: checked once
        plots = {p.name for p in Path(summary["run_dir"], "tune", "plots").iterdir()}
        assert plots == {"optimization_history.png", "intermediate_values.png", "parallel_coordinate.png",
                         "param_importances.png"}
        assert {a.path for a in MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db").list_artifacts(
            study.user_attrs["mlflow_parent_run_id"], "study")} >= {"study/optimization_history.png"}
        assert [r["worker"] for r in info["workers"]] == [0, 1]  # `workers: 2` started one more process

    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_value"] == pytest.approx(info["best_value"])
    assert parent.data.tags["optuna.stopped_by"] == "n_trials"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in children) == [t.number for t in finished]
    for run in children:
        assert run.info.status == "FINISHED" and "duration_s" in run.data.metrics and "cost_usd" in run.data.metrics
        assert set(run.data.params) == set(study.trials[int(run.data.tags["optuna.trial_number"])].params)
    version = client.get_model_version(summary["registered"]["name"], summary["registered"]["version"])
    assert version.tags["trainpipe.optuna_study"] == info["study"]


def test_two_workers_share_one_study_with_distinct_trials(tmp_path, store):
    """Two real worker processes, started at the same instant as `--workers` starts them, on one SQLite study."""
    from tests.unit.models.test_contract import make_data
    from trainpipe.tuning.study import create_study, open_storage
    from trainpipe.tuning.worker import WorkerJob, start_workers, wait_workers, write_job

    X, y, Xv, yv = make_data("binary", n=600)
    for name, array in (("X_train", X), ("y_train", y), ("X_validation", Xv), ("y_validation", yv)):
        np.save(tmp_path / f"{name}.npy", array)
    (tmp_path / "features.json").write_text(json.dumps({"labels": {"classes": ["a", "b"]}}))
    config = config_from_dict({"name": "w", "task": "binary", "store": str(store), "data": {"path": "x", "target": "y"},
                               "model": {"type": "xgboost", "params": {"n_estimators": 150}},
                               "training": {"early_stopping_rounds": None, "threads": 1},
                               "tuning": {"enabled": True, "n_trials": 10, "pruner": {"type": "none"}}})
    url = f"sqlite:///{store}/optuna.db"
    create_study("two", open_storage(url, config.tuning), config.tuning, "maximize")
    job = WorkerJob(config=config.to_dict(), features_dir=str(tmp_path), groups_file=None, study_name="two",
                    storage=url, metric="roc_auc", direction="maximize", threads=1)
    write_job(job, tmp_path / "job.json", config.recorded_dict())
    results = wait_workers(start_workers(tmp_path / "job.json", 2, tmp_path, job))

    study = optuna.load_study(study_name="two", storage=url)
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert {r["worker"] for r in results} == {1, 2} and all(r["trials_run"] > 0 for r in results)
    assert len({t.user_attrs["worker"] for t in finished}) == 2
    assert 10 <= len(finished) <= 11  # a worker finishes the trial it had started when the total was reached
    assert len({json.dumps(t.params, sort_keys=True) for t in finished}) == len(finished)  # seeds differ per worker


def _open_the_study(url: str, barrier, results) -> None:
    from trainpipe.tuning.config import TuningConfig
    from trainpipe.tuning.study import open_study

    barrier.wait()  # every process starts creating at the same instant
    try:
        open_study(url, TuningConfig(), "raced", "maximize", {"metric": "roc_auc"})
        results.put("ok")
    except Exception as exc:  # noqa: BLE001  reported to the test, which shows it
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
@pytest.mark.parametrize("repetitions", [1, pytest.param(3, marks=pytest.mark.reliability)])  # make test: one
def test_open_study_without_the_lock_retries_the_creation_race(repetitions, tmp_path):
    """A database server gets no file lock: four processes creating the tables and one study of a fresh database
    at once must all succeed by retrying on `already exists` / UNIQUE errors (the same race on SQLite)."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    outcomes = []
    for repetition in range(repetitions):
        url = f"sqlite:///{tmp_path / f'fresh{repetition}.db'}"
        barrier, results = spawn.Barrier(4), spawn.Queue()
        procs = [spawn.Process(target=_open_the_study, args=(url, barrier, results)) for _ in range(4)]
        for proc in procs:
            proc.start()
        outcomes += [results.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join()
        assert optuna.get_all_study_names(url) == ["raced"]
    assert outcomes == ["ok"] * 4 * repetitions
