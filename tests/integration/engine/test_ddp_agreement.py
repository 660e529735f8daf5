"""Decisions made on one rank reach every rank, on a real torchrun (2 CPU processes, gloo): no hang, same end.

tests/integration/engine/ddp_cases.py is the job; each case's expectations are checked here per rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import torch  # noqa: F401
import psutil as psutil

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, dict[int, dict]]:
    out = tmp_path_factory.mktemp("ddp") / "cases.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             "--max-restarts=0", str(Path(__file__).with_name("ddp_cases.py")), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        output, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:  # a hang: the ranks live in sessions of their own, end them too
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(f"the job hung:\n{output[-3000:]}") from None
    assert proc.returncode == 0, output
    found: dict[str, dict[int, dict]] = {}
    for line in out.read_text().splitlines():
        doc = json.loads(line)
        found.setdefault(doc["case"], {})[doc["rank"]] = doc
    return found


def test_rank_zero_ending_without_a_fit_releases_the_rank_waiting_to_train(cases):
    assert cases["release"][1]["released"] is True


def test_a_nan_loss_on_rank_1_only_stops_both_ranks_at_the_same_step(cases):
    # 240 rows, windows of 32: 16 rows a rank, one micro-batch a step; rank 1's 5th loss is step 5's
    errors = [cases["nan_on_rank_1"][rank]["error"] for rank in (0, 1)]
    assert "loss became nan at epoch 1 step 5;" in errors[1]
    assert "loss became non-finite (on another rank) at epoch 1 step 5;" in errors[0]


def test_a_stop_asked_on_rank_0_only_ends_every_rank_after_the_same_epoch(cases):
    assert [cases["stop_on_rank_0"][rank]["epochs"] for rank in (0, 1)] == [1, 1]
    assert all(cases["stop_on_rank_0"][rank]["stopped_early"] for rank in (0, 1))
