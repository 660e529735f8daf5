"""`runs watch` snapshots read from a run folder: the stage in progress, its fit's progress, events, the end."""

from __future__ import annotations

import json

import pytest

from trainpipe.errors import RunError
from trainpipe.pipeline.watch import MetricsReader, snapshot, watch
from trainpipe.store import Store


@pytest.fixture
def run_dir(tmp_path):
    folder = tmp_path / "runs" / "r1"
    folder.mkdir(parents=True)
    return folder


def write_meta(run_dir, **meta):
    (run_dir / "run.json").write_text(json.dumps({"run_id": "r1", "stages": {}, **meta}))


def test_a_running_runs_snapshot_shows_its_stage_the_fits_progress_and_whole_event_lines(tmp_path, run_dir):
    write_meta(run_dir, status="running", stages={"ingest": {"status": "completed", "seconds": 0.5}},
               current_stage={"name": "train", "started_at": 0})
    (run_dir / "live.json").write_text(json.dumps({"stage": "train", "unit": "round", "iteration": 12,
                                                   "values": {"validation_log_loss": 0.2}, "rows_per_s": 5e5}))
    event = {"kind": "health", "severity": "warning", "summary": "stall", "details": {"check": "loss_stall"}}
    (run_dir / "events.jsonl").write_text(json.dumps(event) + "\n" + '{"kind": "hea')  # a line being appended
    doc = snapshot(Store(tmp_path), "r1", MetricsReader("sqlite:///nowhere.db"))
    assert doc["status"] == "running" and doc["stage"] == "train" and "exit_code" not in doc
    assert doc["progress"]["iteration"] == 12 and doc["stages"] == {"ingest": {"status": "completed", "seconds": 0.5}}
    assert doc["events"] == [event] and doc["event_counts"] == {"health.loss_stall": 1}


def test_an_earlier_stages_progress_is_not_shown_as_the_current_ones(tmp_path, run_dir):
    write_meta(run_dir, status="running", current_stage={"name": "evaluate", "started_at": 0})
    (run_dir / "live.json").write_text(json.dumps({"stage": "train", "unit": "epoch", "iteration": 3}))
    assert snapshot(Store(tmp_path), "r1", MetricsReader("sqlite:///nowhere.db"))["progress"] is None


def test_watching_ends_with_the_run_and_its_exit_code(tmp_path, run_dir):
    write_meta(run_dir, status="running", current_stage={"name": "train", "started_at": 0})
    looks = []

    def sleep(seconds):  # the run ends (gate failed) between two looks
        write_meta(run_dir, status="failed", exit_code=3, error="gate failed: ...")

    doc = watch(Store(tmp_path), "r1", MetricsReader("sqlite:///nowhere.db"), 0.1, looks.append, sleep)
    assert [d["status"] for d in looks] == ["running", "failed"]
    assert doc["exit_code"] == 3 and doc["stage"] is None and doc["error"] == "gate failed: ..."


def test_watching_a_run_that_does_not_exist_is_one_error_naming_it(tmp_path):
    with pytest.raises(RunError, match="run 'nope' not found"):
        snapshot(Store(tmp_path), "nope", MetricsReader("sqlite:///nowhere.db"))
    with pytest.raises(RunError, match="RUN_ID: '../x' is not a run id"):
        snapshot(Store(tmp_path), "../x", MetricsReader("sqlite:///nowhere.db"))
