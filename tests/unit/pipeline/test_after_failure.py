"""Stages flagged `runs_after_failure` (the report) run after a failed gate, and the run still ends with the
gate's failure; any other failure, or a failure of such a stage, ends the run as before. Real Run, run folder
and stage table; the stage functions are replaced (tracking off), so only the pipeline's mechanics run."""

from __future__ import annotations

import json

import pytest

from trainpipe.config import config_from_dict
from trainpipe.errors import GateFailed, ValidationFailed
from trainpipe.pipeline import run as pipeline_run
from trainpipe.pipeline.driver import run_pipeline
from trainpipe.stages.context import StageResult
from trainpipe.store import Store


@pytest.fixture
def stages(monkeypatch):
    """Every stage records that it ran (and the failure it ran after); `fail` maps a stage to what it raises."""
    ran: list[tuple[str, str | None]] = []
    fail: dict[str, BaseException] = {}

    def runner(name):
        def run(ctx):
            ran.append((name, type(ctx.failure).__name__ if ctx.failure is not None else None))
            if name in fail:
                raise fail[name]
            (ctx.stage_dir / "out.json").write_text("{}")
            return StageResult(summary={"line": name})
        return run

    monkeypatch.setattr(pipeline_run, "RUNNERS", {name: runner(name) for name in pipeline_run.RUNNERS})
    return ran, fail


def config(tmp_path, **extra):
    (tmp_path / "d.csv").write_text("x,y\n1,0\n2,1\n")  # ingest's cache key reads its size and mtime
    return config_from_dict({"task": "binary", "data": {"path": str(tmp_path / "d.csv"), "target": "y"},
                             "store": str(tmp_path / "store"), "tracking": {"enabled": False}, **extra})


def run(tmp_path, **extra):
    cfg = config(tmp_path, **extra)
    return run_pipeline(cfg, Store.locate(cfg.store), run_id="r1")


def meta(tmp_path) -> dict:
    return json.loads((tmp_path / "store" / "runs" / "r1" / "run.json").read_text())


def test_after_a_failed_gate_the_report_runs_then_the_run_ends_with_the_gate_failure(tmp_path, stages):
    ran, fail = stages
    fail["gate"] = GateFailed("gate failed: test_roc_auc 0.7 < gates.min.test_roc_auc 0.8", key="gates.min.test_roc_auc")
    with pytest.raises(GateFailed) as raised:
        run(tmp_path)
    assert raised.value.exit_code == 3
    assert [n for n, _ in ran][-4:] == ["evaluate", "drift", "gate", "report"] and ran[-1] == ("report", "GateFailed")
    recorded = meta(tmp_path)
    assert recorded["status"] == "failed" and "gates.min.test_roc_auc" in recorded["error"]
    assert recorded["stages"]["gate"]["status"] == "failed" and recorded["stages"]["report"]["status"] == "completed"
    assert "register" not in recorded["stages"]


def test_a_report_that_fails_after_a_failed_gate_leaves_the_gate_failure_as_the_runs(tmp_path, stages):
    ran, fail = stages
    fail["gate"] = GateFailed("gate failed: x", key="gates.max.test_log_loss")
    fail["report"] = RuntimeError("report bug")
    with pytest.raises(GateFailed):
        run(tmp_path)
    assert meta(tmp_path)["stages"]["report"]["status"] == "failed"


def test_other_failures_stop_the_run_at_once(tmp_path, stages):
    ran, fail = stages
    fail["validate"] = ValidationFailed("schema.min_rows: 3 rows", key="schema.min_rows")
    with pytest.raises(ValidationFailed):
        run(tmp_path)
    assert [n for n, _ in ran] == ["ingest", "validate"]


def test_a_passing_run_ends_with_the_report_and_report_enabled_false_leaves_it_out(tmp_path, stages):
    ran, _ = stages
    summary = run(tmp_path)
    assert [s["name"] for s in summary["stages"]][-2:] == ["register", "report"] and ran[-1] == ("report", None)
    usage = meta(tmp_path)["usage"]  # measured for every run (cost metrics go to MLflow when tracking is on)
    assert set(usage) == {"wall_s", "cpu_s", "gpu_s"} and usage["wall_s"] > 0
    ran.clear()
    cfg = config(tmp_path, report={"enabled": False}, drift={"mode": "off"})
    run_pipeline(cfg, Store.locate(cfg.store), run_id="r2")
    assert "report" not in [n for n, _ in ran] and "drift" not in [n for n, _ in ran]
