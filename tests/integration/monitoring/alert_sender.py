"""A separate process that sends alerts through a store's throttle: `python -m tests.integration.monitoring.alert_sender JOB`.

JOB is a JSON file: {"config": alerts section, "state_file": path, "start_at": epoch seconds, "events": [{kind,
severity, summary, run_id, key}]}. The process waits until start_at (so that several start sending at the same
instant), sends the events in order and prints one JSON line per event: {"summary", "sent", "reason"}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from trainpipe.monitoring.alerts import Alerter, AlertsConfig
from trainpipe.monitoring.events import Event


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    alerter = Alerter(AlertsConfig.model_validate(job["config"]), Path(job["state_file"]))
    events = [Event(**doc) for doc in job["events"]]
    time.sleep(max(job["start_at"] - time.time(), 0))
    for event in events:
        outcome = alerter.send(event)
        print(json.dumps({"summary": event.summary, "sent": outcome.sent, "reason": outcome.reason}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
