"""The report's "Training health and resources" section: the run's events, its usage and MLflow's system metrics."""

import json

from trainpipe.monitoring.events import EVENTS_FILE, drift_detected
from trainpipe.monitoring.health import HealthEvent
from trainpipe.reports.folder import RunFolder
from trainpipe.reports.sections_run import monitoring
from trainpipe.reports.tracked import Tracked


def write_run(tmp_path, events, usage=None):
    (tmp_path / "run.json").write_text(json.dumps({"run_id": "r1", **({"usage": usage} if usage else {})}))
    lines = [json.dumps(e.to_json()) for e in events] + ['{"kind": "health", "summ']  # a line cut short by a crash
    (tmp_path / EVENTS_FILE).write_text("\n".join(lines) + "\n")
    return RunFolder.open(tmp_path)


def test_events_usage_and_system_metrics_are_shown(tmp_path):
    stall = HealthEvent("loss_stall", "warning", "train_loss has not improved for 3 epochs", 4, {"epochs": 3})
    folder = write_run(tmp_path, [stall.as_event("r1"), drift_detected("r1", "warn", ["age"], "drift: age")],
                       usage={"wall_s": 75.0, "cpu_s": 120.5, "gpu_s": 0.0})
    tracked = Tracked(system={"system/cpu_utilization_percentage": ([0, 1, 2], [50.0, 97.0, 99.0]),
                              "system/system_memory_usage_megabytes": ([0, 1, 2], [900.0, 1200.0, 1250.0])})
    section = monitoring(folder, tracked)
    (events,) = section.tables
    assert [row[1:3] for row in events.rows] == [["health", "warning"], ["drift", "warning"]]
    assert events.rows[0][3] == "run r1: train_loss has not improved for 3 epochs"
    facts = dict(section.facts)
    assert facts["health events"] == "1 (loss_stall)"
    assert (facts["wall time"], facts["CPU time"], facts["GPU time"]) == ("1 min 15 s", "2 min 0 s", "none used")
    assert [f.title for f in section.figures] == ["CPU utilisation (%)", "Memory (MB)"]
    assert section.figures[0].spec["data"][0]["y"] == [50.0, 97.0, 99.0]


def test_a_run_without_events_or_samples_says_why(tmp_path):
    folder = write_run(tmp_path, [])
    section = monitoring(folder, Tracked(reason="tracking was off for this run (tracking.enabled: false)"))
    assert not section.tables and not section.figures
    assert section.notes == ["no events were recorded for this run (no health warnings, drift or budget stops)",
                             "resource usage: not recorded in run.json",
                             "system metrics (CPU, memory, GPU over time): tracking was off for this run "
                             "(tracking.enabled: false)"]
