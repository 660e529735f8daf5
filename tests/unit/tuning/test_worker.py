"""How a failed worker is named in the tune stage's one error line (tuning/worker.py's wait_workers)."""

import subprocess
import sys

import pytest

from trainpipe.errors import ModelError
from trainpipe.tuning.worker import wait_workers

TORCHRUN_FAILURE = """[default0]:epoch 3/500  train_loss 0.1
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
=======================================================
trainpipe.stages.tune FAILED
-------------------------------------------------------
Failures:
[1]:
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 10933)  (SIGTERM)
-------------------------------------------------------
Root Cause (first observed failure):
[0]:
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 10934)  (SIGKILL)
=======================================================
"""


def failed_worker(tmp_path, text: str) -> list:
    log = tmp_path / "worker-0.log"
    log.write_text(text)
    return [(subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"]), log)]


def test_a_ddp_trial_worker_whose_rank_was_killed_names_the_rank_and_signal_not_torchrun_decoration(tmp_path):
    with pytest.raises(ModelError) as err:
        wait_workers(failed_worker(tmp_path, TORCHRUN_FAILURE))
    assert err.value.message == (f"tuning: worker-0 exited 1: trial process rank 1 was killed by SIGKILL "
                                 f"(log {tmp_path / 'worker-0.log'})")


def test_rank_zeros_own_error_line_wins_over_the_torchrun_summary(tmp_path):
    text = "[default0]:error: tuning.storage: cannot open sqlite:///x.db: disk I/O error\n" + TORCHRUN_FAILURE
    with pytest.raises(ModelError) as err:
        wait_workers(failed_worker(tmp_path, text))
    assert err.value.message == "tuning: worker-0 exited 1: error: tuning.storage: cannot open sqlite:///x.db: disk I/O error"
