"""RunTracking holds a run's MLflow calls until a stage that starts it (train, tune), a timeout or the end of the
run, then sends them in their order: MLflow's import overlaps fitting instead of the data stages (only for
families whose fit releases the GIL)."""

from __future__ import annotations

import json
import time

import pytest

from trainpipe.config import config_from_dict
from trainpipe.pipeline import tracking as tracking_module
from trainpipe.pipeline.tracking import RunTracking
from trainpipe.store import Store
from trainpipe.tracking.tracker import Tracker


def start_tracking(bc_config, store, run_id: str):
    """A run folder and its RunTracking, started (its calls held)."""
    config = config_from_dict(bc_config)
    target = Store.locate(str(store)).ensure()
    run_dir = target.runs_dir / run_id
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("task: binary\n")
    tracking = RunTracking(target, config)
    tracking.start(run_id, run_dir, "hash")
    return tracking, config, target


@pytest.fixture
def started(bc_config, store):
    tracking, config, target = start_tracking(bc_config, store, "held")
    tracking.metrics({"rows": 1.0})
    return tracking, config, target


def mlflow_runs(config, target) -> list:
    client = Tracker(target, config.tracking).client
    experiment = client.get_experiment_by_name(config.name)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def test_calls_wait_for_release_then_run_in_their_order(started):
    tracking, config, target = started
    assert tracking._thread is None and tracking.mlflow_run_id is None  # nothing sent, MLflow not even imported
    tracking.release()
    tracking.close()
    (run,) = mlflow_runs(config, target)
    assert run.info.run_id == tracking.mlflow_run_id and run.data.metrics["rows"] == 1.0  # start came first
    assert run.data.tags["trainpipe.run_id"] == "held"


def test_held_calls_are_sent_after_the_hold_timeout(bc_config, store, monkeypatch):
    monkeypatch.setattr(tracking_module, "HOLD_SECONDS", 0.2)
    tracking, config, target = start_tracking(bc_config, store, "slow-data")
    deadline = time.monotonic() + 30
    while tracking.mlflow_run_id is None and time.monotonic() < deadline:  # no stage released it
        time.sleep(0.05)
    assert tracking.mlflow_run_id is not None
    tracking.finish("completed", None)
    (run,) = mlflow_runs(config, target)
    assert run.info.status == "FINISHED"


def test_a_run_that_ends_before_any_release_is_still_tracked_to_its_end(started):
    tracking, config, target = started
    tracking.finish("failed", "DataError: data.path: no such file")  # e.g. ingest failed: close() releases
    (run,) = mlflow_runs(config, target)
    assert run.info.status == "FAILED" and run.data.tags["trainpipe.error"].startswith("DataError")


def test_a_heartbeat_never_starts_a_held_worker(started):
    tracking, _, _ = started
    tracking.owner = {"pid": 1}
    tracking.heartbeat(123.0)
    assert tracking._thread is None
    tracking.close()


def test_runs_list_shows_a_run_still_held_from_mlflow_once_even_on_a_fresh_store(started):
    """`runs list` reads MLflow; a run in its data stages is only a run folder yet, so it is listed from there."""
    from trainpipe.pipeline.runs import list_runs

    tracking, config, target = started
    meta = {"run_id": "held", "created_at": "2026-12-01T05:00:00+0000", "status": "running", "stages": {},
            "mlflow_run_id": None}
    (target.runs_dir / "held" / "run.json").write_text(json.dumps(meta))
    (target.runs_dir / "held" / "config.yaml").write_text(f"name: {config.name}\ntask: binary\nmodel: {{type: xgboost}}\n")
    assert not (target.root / "mlflow.db").exists()  # nothing reached MLflow: not even its database
    (row,) = list_runs(target.tracking_uri, None, 20, store=target)
    assert (row["run_id"], row["status"], row["experiment"], row["model"]) == ("held", "RUNNING", config.name, "xgboost")
    assert list_runs(target.tracking_uri, "another-experiment", 20, store=target) == []

    tracking.release()
    tracking.close()  # now in MLflow (run.json not yet updated, as between two saves): listed once, from MLflow
    (row,) = list_runs(target.tracking_uri, None, 20, store=target)
    assert row["run_id"] == "held" and row["mlflow_run_id"] == tracking.mlflow_run_id


@pytest.mark.parametrize("family, waits", [("xgboost", True), ("lightgbm", True), ("torch_mlp", False),
                                           ("sklearn", False)])
def test_only_a_family_whose_fit_releases_the_gil_makes_the_mlflow_worker_wait_for_training(bc_config, family, waits):
    """A torch training loop would share the GIL with MLflow's import: its run starts the worker at once."""
    from trainpipe.pipeline.driver import tracking_waits_for_training

    bc_config["model"] = {"type": family, "params": {}}
    assert tracking_waits_for_training(config_from_dict(bc_config)) is waits
