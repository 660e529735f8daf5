"""The stage table assembled from the stage modules: the order, what each cache key covers and what each
stage reads are the ones docs/architecture.md documents (a change here changes every cache key)."""

from __future__ import annotations

import pytest

from trainpipe.config import config_from_dict
from trainpipe.pipeline.stages import MODULES, RUNNERS, SPECS, STAGE_NAMES, active_stages

TABLE = {  # name: (sections, upstream, reusable, enabled_by)
    "ingest": (("data",), (), True, None),
    "validate": (("data", "schema", "task", "ranking"), ("ingest",), True, None),
    "split": (("split", "seed", "task", "data.target", "data.id_column", "ranking"), ("ingest", "validate"), True, None),
    "features": (("features", "data", "task", "model.type", "ranking"), ("ingest", "split"), True, None),
    "tune": (("tuning", "model", "training", "seed", "task", "evaluation"), ("features",), True, "tuning.enabled"),
    "train": (("model", "training", "seed", "task", "ranking"), ("features", "tune"), True, None),
    "evaluate": (("evaluation", "task", "ranking"), ("features", "train"), True, None),
    "drift": (("drift", "data", "task", "features", "seed"), ("ingest", "validate"), False, "drift.enabled"),
    "gate": (("gates", "evaluation", "registry", "task", "ranking", "drift"),
             ("ingest", "drift", "split", "features", "evaluate"), False, None),
    "register": (("registry", "evaluation", "task", "ranking"),
                 ("ingest", "split", "features", "train", "evaluate", "gate"), False, None),
    "report": (("report",), (), False, "report.enabled"),
}


def test_the_table_comes_from_the_stage_modules_in_pipeline_order():
    assert STAGE_NAMES == tuple(TABLE)
    assert [m.__name__.rsplit(".", 1)[1] for m in MODULES] == list(TABLE)
    assert {name: RUNNERS[name].__module__ for name in STAGE_NAMES} == {n: f"trainpipe.stages.{n}" for n in TABLE}


@pytest.mark.parametrize("name", list(TABLE))
def test_each_spec_covers_what_the_docs_say(name):
    spec = SPECS[name]
    assert (spec.sections, spec.upstream, spec.reusable, spec.enabled_by) == TABLE[name]


def test_only_the_report_runs_after_a_failed_gate_and_drift_and_report_can_be_switched_off():
    from trainpipe.errors import GateFailed, ValidationFailed

    assert [n for n in STAGE_NAMES if SPECS[n].runs_after_failure] == ["report"]
    assert issubclass(GateFailed, SPECS["report"].runs_after_failure) and \
        not issubclass(ValidationFailed, SPECS["report"].runs_after_failure)
    base = {"task": "binary", "data": {"path": "d.csv", "target": "y"}}
    assert {"drift", "report"} <= set(active_stages(config_from_dict(base)))
    off = active_stages(config_from_dict({**base, "drift": {"mode": "off"}, "report": {"enabled": False}}))
    assert "drift" not in off and "report" not in off


def test_tune_runs_only_when_tuning_is_on_and_stage_lines_read_from_the_summary():
    base = {"task": "binary", "data": {"path": "d.csv", "target": "y"}}
    assert "tune" not in active_stages(config_from_dict(base))
    assert "tune" in active_stages(config_from_dict({**base, "tuning": {"enabled": True}}))
    assert SPECS["split"].summary_line({"strategy": "stratified", "train": 7, "validation": 2, "test": 1}) == \
        "stratified: train 7 · validation 2 · test 1"
    assert SPECS["validate"].summary_line({"line": "12 interactions"}) == "12 interactions"  # a task's own wording


def test_the_cache_key_covers_the_schema_file_and_a_user_estimator_only_where_the_config_names_them(tmp_path):
    schema = tmp_path / "schema.yaml"
    schema.write_text("columns: {}\n")
    config = config_from_dict({"task": "binary", "data": {"path": "d.csv", "target": "y"},
                               "schema": {"path": str(schema)}})
    assert SPECS["validate"].files(config) == [str(schema)] and SPECS["features"].files(config) == []
    assert SPECS["train"].code(config) == {}  # xgboost imports no user code
