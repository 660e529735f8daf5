"""StageContext.emit: every event of a run lands in <run>/events.jsonl, in order, and reaches the alert hook."""

import json

from trainpipe.monitoring.events import budget_exceeded, drift_detected
from trainpipe.stages.context import EVENTS_FILE, StageContext


def test_emitted_events_are_appended_in_order_and_handed_to_the_alert_hook(tmp_path):
    delivered = []
    ctx = StageContext(run_id="r1", run_dir=tmp_path, stage_dir=tmp_path / "validate", config=None,  # type: ignore[arg-type]
                       store=None, task=None, on_event=delivered.append)  # type: ignore[arg-type]
    first = drift_detected("r1", "warn", ["age"], "drift: age (PSI 0.3)")
    second = budget_exceeded("r1", "budget.max_cost", "budget.max_cost $1 reached")
    ctx.emit(first)
    ctx.emit(second)
    lines = [json.loads(line) for line in (tmp_path / EVENTS_FILE).read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["drift", "budget_exceeded"]
    assert lines[0]["summary"] == first.summary and lines[1]["run_id"] == "r1"
    assert delivered == [first, second]
