"""A streamed torch_mlp run (data.streaming: on: batches from the features' Parquet row groups through the
engine's ParquetBatches) preempted by SIGTERM mid-epoch resumes to the same weights as an uninterrupted run."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import torch as torch

from tests.e2e import step_hooks
from tests.e2e.test_torch_resume import _cli, _paused, assert_same_result
from trainpipe.tools.datasets import synthetic_churn


def make_config(data: Path, store: Path, callbacks: tuple[str, ...] = ()) -> dict:
    config = {"name": "churn-stream", "task": "binary", "store": str(store),
              "data": {"path": str(data), "target": "churn", "id_column": "customer_id", "streaming": "on",
                       "stream_batch_rows": 1000},
              "model": {"type": "torch_mlp", "params": {"epochs": 3, "hidden_dims": [16], "batch_size": 64,
                                                        "dropout": 0.1, "lr": 0.01}},
              "training": {"early_stopping_rounds": 2, "threads": 1, "checkpoint": {"every_steps": 7, "keep_last": 2}}}
    if callbacks:
        config["training"]["callbacks"] = list(callbacks)
    return config


@pytest.mark.extended
def test_sigterm_mid_epoch_of_a_streamed_run_then_resume_is_bit_identical(tmp_path):
    data = tmp_path / "churn.parquet"
    pq.write_table(pa.Table.from_pandas(synthetic_churn(rows=3000, seed=1), preserve_index=False), data,
                   row_group_size=250)
    reference = tmp_path / "reference.yaml"
    reference.write_text(yaml.safe_dump(make_config(data, tmp_path / "ref-store")))
    done = _cli("run", str(reference), "--run-id", "ref")
    assert done.returncode == 0, done.stderr
    ref = tmp_path / "ref-store" / "runs" / "ref"
    assert json.loads((ref / "features" / "features.json").read_text())["streamed"] is True
    steps_per_epoch = -(-json.loads((ref / "features" / "features.json").read_text())["matrices"]["train"]["rows"] // 64)

    victim = tmp_path / "victim.yaml"
    victim.write_text(yaml.safe_dump(make_config(data, tmp_path / "store", callbacks=(step_hooks.REFERENCE,))))
    step = steps_per_epoch + steps_per_epoch // 2 + 3  # mid-epoch 2, between two checkpoints
    proc = _paused(["run", str(victim), "--run-id", "victim"], tmp_path / "step", step)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    final = _cli("run", "--resume", "victim", "--store", str(tmp_path / "store"))
    assert final.returncode == 0, final.stderr
    assert "resuming from" in final.stderr
    assert_same_result(tmp_path / "store" / "runs" / "victim", ref)
