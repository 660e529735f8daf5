"""backfill deletes a trial run left RUNNING only when the process that was writing it is gone: another
`trainpipe tune` on the same host (a second `--join`) may be writing its run at that moment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import optuna

from trainpipe.store import Store
from trainpipe.tracking.tracker import Tracker
from trainpipe.tracking.config import TrackingConfig
from trainpipe.tuning.tracking import backfill


def test_backfill_deletes_a_dead_workers_running_trial_run_but_not_a_live_ones(tmp_path):
    tracker = Tracker(Store(tmp_path / "store").ensure(), TrackingConfig())
    parent = tracker.start_run("study", "study s", {})
    experiment = tracker.experiment_id("study")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    runs = {}
    for who, pid in (("live", os.getpid()), ("dead", int(dead.stdout))):
        runs[who] = tracker.start_run("study", f"trial of the {who} worker",
                                      {"mlflow.parentRunId": parent, "trainpipe.worker": f"{socket.gethostname()}:{pid}"})
    study = optuna.create_study()  # no finished trials: backfill only tidies
    backfill(tracker, experiment, parent, study, ["validation_roc_auc"])
    assert tracker.client.get_run(runs["live"]).info.lifecycle_stage == "active"  # still being written elsewhere
    assert tracker.client.get_run(runs["dead"]).info.lifecycle_stage == "deleted"
