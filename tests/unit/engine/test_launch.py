"""How a torchrun job ended, from the ranks' status files and torchrun's log: one line each way."""

from __future__ import annotations

import pytest

from trainpipe.engine.config import DistributedConfig
from trainpipe.engine.launch import RankDied, _outcome, torchrun_command, write_status
from trainpipe.errors import ModelError, Preempted

ROOT_CAUSE = """Root Cause (first observed failure):
[0]:
  time      : 2026-11-30_15:16:14
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 14100)  (SIGKILL)
"""


def test_rank_zero_done_is_the_outcome(tmp_path):
    write_status(tmp_path, 0, "done")
    write_status(tmp_path, 1, "done")
    assert _outcome(tmp_path, 2, 0, tmp_path / "log", signalled=False).outcome == "done"


def test_a_rank_without_a_status_is_named_with_the_signal_from_torchruns_summary(tmp_path):
    log = tmp_path / "torchrun.log"
    log.write_text("noise\n" + ROOT_CAUSE)
    write_status(tmp_path, 0, "error", RuntimeError("Connection closed by peer\nmore"))
    with pytest.raises(RankDied, match=r"rank 1 of 2 was killed by SIGKILL .*--resume") as caught:
        _outcome(tmp_path, 2, 1, log, signalled=False)
    assert "\n" not in caught.value.message


def test_a_preemption_wins_over_errors_it_caused_and_keeps_exit_code_143(tmp_path):
    write_status(tmp_path, 0, "preempted", Preempted("training preempted by SIGTERM at epoch 1 step 5", key="train"))
    write_status(tmp_path, 1, "error", RuntimeError("gloo: connection reset"))
    with pytest.raises(Preempted, match="step 5") as caught:
        _outcome(tmp_path, 2, 1, tmp_path / "log", signalled=True)
    assert caught.value.exit_code == 143


def test_a_users_error_in_a_rank_comes_back_as_the_same_class_and_key(tmp_path):
    error = ModelError("model.params.monitor: 'x' is not one of [...]", key="model.params.monitor")
    for rank in (0, 1):
        write_status(tmp_path, rank, "error", error)
    with pytest.raises(ModelError, match="model.params.monitor") as caught:
        _outcome(tmp_path, 2, 1, tmp_path / "log", signalled=False)
    assert caught.value.key == "model.params.monitor"


def test_a_bug_in_a_rank_is_one_line_pointing_at_its_traceback(tmp_path):
    write_status(tmp_path, 0, "error", ValueError("boom"), "Traceback (most recent call last):\n ...")
    write_status(tmp_path, 1, "done")
    with pytest.raises(RankDied, match=r"rank 0 failed: ValueError: boom \(traceback in .*rank-0.json\)"):
        _outcome(tmp_path, 2, 1, tmp_path / "log", signalled=False)


def test_one_machine_uses_a_standalone_rendezvous_and_several_the_c10d_endpoint(tmp_path):
    one = torchrun_command(DistributedConfig(nproc_per_node=2), "run1", tmp_path, "pkg.mod", ["--a", "1"])
    assert "--standalone" in one and "--nproc-per-node=2" in one and one[-4:] == ["-m", "pkg.mod", "--a", "1"]
    several = torchrun_command(DistributedConfig(nproc_per_node=4, nnodes=2, rdzv_endpoint="10.0.0.5:29500"),
                               "run1", tmp_path, "pkg.mod", [])
    assert "--standalone" not in several
    assert {"--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=10.0.0.5:29500", "--rdzv-id=run1"} <= set(several)
