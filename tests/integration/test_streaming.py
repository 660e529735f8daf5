"""Data larger than memory (data.streaming): a table in tiny Parquet row groups forced through the streamed path,
in-process against a real MLflow store, compared with the in-memory path on the same data.

Tolerances: the two paths split differently (streamed rows are assigned by a seeded hash, in-memory ones by a
stratified permutation) and fit the preprocessing on a sample, so the test metrics are those of another draw of
the same data: on 8,000 rows (1,200 test rows) the AUC's sampling error is about ±0.015; the tolerance is 0.02.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainpipe.config import config_from_dict
from trainpipe.pipeline.driver import run_pipeline
from trainpipe.store import Store
from trainpipe.tools.datasets import synthetic_churn


def run(doc: dict, **kwargs) -> dict:
    config = config_from_dict(doc)
    return run_pipeline(config, Store.locate(config.store), **kwargs)


def rewrite(frame, path: Path, row_group_size: int) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="module")
def churn_parquet(tmp_path_factory) -> Path:
    return rewrite(synthetic_churn(rows=8000, seed=5), tmp_path_factory.mktemp("stream") / "churn.parquet", 500)


def churn_doc(path: Path, store: Path, streaming: str, model: dict) -> dict:
    return {"name": "churn-stream", "task": "binary", "store": str(store),
            "data": {"path": str(path), "target": "churn", "id_column": "customer_id", "streaming": streaming,
                     "stream_batch_rows": 1000},
            "model": model, "training": {"early_stopping_rounds": 5, "threads": 1}}


def test_breast_cancer_streams_through_every_stage_and_registers(data_dir, bc_config, tmp_path):
    """sklearn's breast cancer table in row groups of 50 rows: every stage streams, the model is registered."""
    import pandas as pd

    path = rewrite(pd.read_parquet(data_dir / "bc.parquet"), tmp_path / "bc.parquet", 50)
    doc = {**bc_config, "data": {**bc_config["data"], "path": str(path), "streaming": "on", "stream_batch_rows": 1000}}
    summary = run(doc)
    assert summary["status"] == "completed"
    folder = Path(summary["run_dir"])
    manifest = lambda stage: json.loads((folder / stage / "manifest.json").read_text())  # noqa: E731
    assert manifest("ingest")["outputs"]["streaming"] is True
    assert json.loads((folder / "split" / "split.json").read_text())["strategy"] == "hash"
    assert sorted(p.name for p in (folder / "features").glob("*.parquet")) == [
        "matrix_test.parquet", "matrix_train.parquet", "matrix_validation.parquet"]
    assert not list((folder / "features").glob("X_*.npy"))  # no whole matrix anywhere
    rows = pq.ParquetFile(folder / "features" / "matrix_train.parquet").metadata.num_rows
    assert rows + sum(len(np.load(folder / "features" / f"y_{s}.npy")) for s in ("validation", "test")) == 569
    assert summary["metrics"]["test"]["roc_auc"] > 0.95
    assert manifest("register")["status"] == "completed"


@pytest.mark.parametrize("model", [{"type": "xgboost", "params": {"n_estimators": 60, "max_depth": 4}},
                                   pytest.param({"type": "torch_mlp", "params": {"epochs": 3, "hidden_dims": [32],
                                                                  "batch_size": 256}}, marks=pytest.mark.extended)],
                         ids=["xgboost", "torch_mlp"])
def test_streamed_training_matches_the_in_memory_path_within_sampling_error(churn_parquet, tmp_path, model):
    streamed = run(churn_doc(churn_parquet, tmp_path / "streamed", "on", model))
    in_memory = run(churn_doc(churn_parquet, tmp_path / "in-memory", "off", model))  # its own registry
    assert streamed["status"] == in_memory["status"] == "completed"
    ours, theirs = streamed["metrics"]["test"], in_memory["metrics"]["test"]
    assert theirs["roc_auc"] > 0.7
    assert abs(ours["roc_auc"] - theirs["roc_auc"]) < 0.02
    assert abs(ours["log_loss"] - theirs["log_loss"]) < 0.03
    # deterministic; and its gate scores the champion (the first streamed model) on the streamed test rows
    again = run(churn_doc(churn_parquet, tmp_path / "streamed", "on", model), use_cache=False)
    assert again["metrics"]["test"] == ours
    decision = json.loads((Path(again["run_dir"]) / "gate" / "decision.json").read_text())
    assert decision["champion_version"] == "1" and decision["passed"]


def test_a_streamed_run_never_reads_the_table_whole_and_drift_samples_the_rows_memory_would(churn_parquet, tmp_path,
                                                                                          monkeypatch):
    """Drift (against a champion) and register's drift reference take `drift.max_rows` seeded rows batch by batch.
    Before, both read the whole table (StageContext.table), so a streamed run's peak memory grew with the table:
    +3x the table at 1M rows (benchmarks/larger_than_memory.py). The rows are those the in-memory sampling of the
    whole table (or of the training rows) takes, so drift figures are unchanged."""
    import pandas as pd

    from trainpipe.data.drift import sample_rows
    from trainpipe.stages.context import StageContext
    from trainpipe.tasks import task_for
    from trainpipe.tasks.tabular import TabularTask

    doc = {**churn_doc(churn_parquet, tmp_path / "store", "on", {"type": "xgboost", "params": {"n_estimators": 10}}),
           "drift": {"max_rows": 1000}}
    whole_table = StageContext.table

    def refuse(self):
        raise AssertionError("a stage of a streamed run read the whole table")

    monkeypatch.setattr(StageContext, "table", refuse)
    first, second = run(doc), run(doc)  # the second compares its data with the champion the first registered
    assert first["status"] == second["status"] == "completed"
    drift = json.loads((Path(second["run_dir"]) / "drift" / "drift.json").read_text())
    assert drift["champion_version"] == "1" and drift["status"] in ("ok", "warn") and len(drift["columns"]) > 5

    monkeypatch.setattr(StageContext, "table", whole_table)
    config = config_from_dict(doc)
    ctx = StageContext(second["run_id"], Path(second["run_dir"]), tmp_path / "probe", config, Store.locate(config.store),
                       task_for(config))
    for split in (None, "train"):
        streamed = ctx.task.drift_table(ctx, split)
        whole = TabularTask.drift_table(ctx.task, ctx, split)  # what a streamed run did before: the table in memory
        assert streamed is not None and whole is not None and len(streamed.frame) == len(whole.frame) == 1000
        pd.testing.assert_frame_equal(streamed.frame, whole.frame.reset_index(drop=True))
        # in memory the sample is taken before the rows are copied, and they are the rows sampling the copy took
        copied = ctx.table() if split is None else ctx.raw_rows(split)
        pd.testing.assert_frame_equal(whole.frame, sample_rows(copied, 1000, config.seed)[whole.frame.columns])
