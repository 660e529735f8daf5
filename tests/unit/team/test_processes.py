"""Stopping only what was recorded: a PID is identified together with its kernel start time."""

from __future__ import annotations

import os
import signal
import subprocess

from trainpipe.team import processes


def test_a_recorded_pid_whose_start_time_differs_is_not_signalled():
    me = processes.record(os.getpid())
    reused = {**me, "start_time": me["start_time"] + 1}  # the PID now belongs to another process
    assert processes.alive(me) and not processes.alive(reused)
    assert processes.stop(reused, signal.SIGKILL) is False  # we are still here to assert it


def test_stop_ends_the_recorded_process_and_its_group(tmp_path):
    proc = processes.spawn(["sh", "-c", "sleep 60 & sleep 60"], tmp_path / "log")
    rec = processes.record(proc.pid)
    child = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert processes.stop(rec, signal.SIGTERM, wait=5, group=True) is True
    assert not processes.alive(rec)
    assert not [pid for pid in child if processes.start_time(int(pid)) is not None]
    assert processes.stop(rec, signal.SIGTERM) is False  # already stopped: nothing to signal
