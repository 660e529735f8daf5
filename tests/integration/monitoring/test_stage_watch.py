"""A stage's watch on a real run: MLflow's system metrics sampled into the run's MLflow run (SQLite store) while
the stage works, and the resource health checks reading those samples into events.jsonl and the alert hook."""

from __future__ import annotations

import json
import time

from trainpipe.config import config_from_dict
from trainpipe.pipeline.tracking import RunTracking
from trainpipe.stages.context import EVENTS_FILE, StageContext
from trainpipe.stages.watching import StageWatch
from trainpipe.store import Store


def test_a_stage_samples_system_metrics_and_warns_when_memory_nears_the_limit(bc_config, store):
    config = config_from_dict({**bc_config, "system_metrics": {"interval_s": 0.2},
                               "health": {"memory_max_percent": 1}})  # any machine uses more than 1%
    target = Store.locate(str(store)).ensure()
    run_dir = target.runs_dir / "sampled"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("task: binary\n")
    tracking = RunTracking(target, config)
    tracking.start("sampled", run_dir, "hash")
    tracking.release()  # as the train stage's start does
    delivered = []
    ctx = StageContext("sampled", run_dir, run_dir / ".train.tmp", config, target, task=None,  # type: ignore[arg-type]
                       tracking=tracking, on_event=delivered.append)
    with StageWatch(ctx, "train").sampling():
        deadline = time.monotonic() + 60
        while not delivered and time.monotonic() < deadline:
            time.sleep(0.1)
    tracking.close()
    (event,) = delivered  # reported once while it lasts, not once per sample
    assert event.kind == "health" and event.details["check"] == "memory_high"
    assert "system memory" in event.summary and "health.memory_max_percent 1" in event.summary
    lines = [json.loads(line) for line in (run_dir / EVENTS_FILE).read_text().splitlines()]
    assert [line["details"]["check"] for line in lines] == ["memory_high"]
    from mlflow import MlflowClient

    client = MlflowClient(target.tracking_uri)
    metrics = client.get_run(tracking.mlflow_run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_percentage"} <= set(metrics)
    assert metrics["events/health.memory_high"] == 1.0


def test_system_metrics_switched_off_start_no_sampler(bc_config, store):
    config = config_from_dict({**bc_config, "system_metrics": {"enabled": False}})
    started = []

    class Tracking:
        mlflow_run_id = "x"

        def sample_system(self, interval_s, on_sample):
            started.append(interval_s)
            return lambda: None

    ctx = StageContext("r", store, store, config, Store.locate(str(store)), task=None,  # type: ignore[arg-type]
                       tracking=Tracking())  # type: ignore[arg-type]
    with StageWatch(ctx, "train").sampling():
        pass
    assert started == []
