"""A run whose budget is spent stops training cleanly: one line naming the budget key, a budget event in the
run's events, the run failed (resumable from its checkpoint), and its cost logged all the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from trainpipe.config import config_from_dict
from trainpipe.errors import BudgetExceeded
from trainpipe.pipeline.driver import run_pipeline
from trainpipe.store import Store


def test_a_spent_time_budget_stops_training_with_one_line_and_a_budget_event(bc_config):
    doc = {**bc_config, "model": {"type": "xgboost", "params": {"n_estimators": 2000, "max_depth": 3}},
           "budget": {"max_minutes": 0.0001}}  # 6 ms: spent before the first boosting round ends
    config = config_from_dict(doc)
    with pytest.raises(BudgetExceeded) as stopped:
        run_pipeline(config, Store.locate(config.store), run_id="over")
    assert stopped.value.key == "budget.max_minutes" and "\n" not in stopped.value.message
    assert stopped.value.message.startswith("budget.max_minutes 0.0001 reached after")
    assert "training stopped after boosting round 1" in stopped.value.message
    run_dir = Path(bc_config["store"]) / "runs" / "over"
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "failed" and meta["stages"]["train"]["status"] == "failed"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "run_failed"  # the run's end, after the budget's own event
    (event,) = [e for e in events if e["kind"] == "budget_exceeded"]
    assert event["kind"] == "budget_exceeded" and event["details"]["budget_key"] == "budget.max_minutes"
    metrics = MlflowClient(meta["tracking_uri"]).get_run(meta["mlflow_run_id"]).data.metrics
    assert metrics["duration_s"] > 0 and metrics["cost_usd"] == 0.0 and {"cpu_s", "gpu_s"} <= set(metrics)
