"""Reading a run folder for the report: finished and failed stages, and why something is absent."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainpipe.errors import RunError
from trainpipe.reports.folder import RunFolder


def make(tmp_path, meta: dict, config: str = "task: binary\nmodel: {type: xgboost}\n"):
    (tmp_path / "run.json").write_text(json.dumps({"run_id": "r1", **meta}))
    (tmp_path / "config.yaml").write_text(config)
    return RunFolder.open(tmp_path)


def test_a_folder_without_run_json_is_one_clear_error(tmp_path):
    with pytest.raises(RunError, match="not a run folder"):
        RunFolder.open(tmp_path)


def test_finished_stage_files_come_from_the_stage_folder_and_failed_ones_from_its_evidence(tmp_path):
    folder = make(tmp_path, {"status": "failed", "stages": {"gate": {"status": "failed", "error": "gate failed: x"}}})
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "evaluate" / "manifest.json").write_text(json.dumps({"summary": {"primary_metric": "roc_auc"}}))
    np.save(tmp_path / "evaluate" / "test_scores.npy", np.ones((3, 2)))
    (tmp_path / "gate.failed").mkdir()
    (tmp_path / "gate.failed" / "decision.json").write_text(json.dumps({"passed": False}))
    assert folder.finished("evaluate") and folder.manifest("evaluate")["summary"]["primary_metric"] == "roc_auc"
    assert folder.array("evaluate", "test_scores.npy").shape == (3, 2)
    assert not folder.finished("gate") and folder.manifest("gate") is None
    assert folder.json("gate", "decision.json") == {"passed": False}
    assert folder.json("register", "registered.json") is None and folder.array("train", "x.npy") is None


def test_why_missing_names_the_failed_stage_the_stop_or_the_switch(tmp_path):
    folder = make(tmp_path, {"status": "failed", "stages": {"ingest": {"status": "completed"},
                                                            "validate": {"status": "failed", "error": "schema.min_rows: 5"}}})
    assert folder.why_missing("validate") == "stage validate failed: schema.min_rows: 5"
    assert folder.why_missing("train") == "the run stopped at stage validate, before train"
    assert folder.why_missing("tune") == "tuning did not run (tuning.enabled is false)"
    running = make(tmp_path, {"status": "running", "stages": {}})
    assert "still running" in running.why_missing("evaluate")


def test_settings_are_read_by_dotted_key_with_a_default(tmp_path):
    folder = make(tmp_path, {"status": "completed"}, "task: regression\nmodel:\n  type: lightgbm\n  params: {a: 1}\n")
    assert folder.task == "regression" and folder.setting("model.params.a") == 1
    assert folder.setting("model.params.monitor", "none") == "none" and folder.setting("task.x") is None
