"""The pipeline in-process against a real MLflow SQLite store: tracking, determinism, caching, resume."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from trainpipe.config import config_from_dict
from trainpipe.pipeline import run_pipeline
from trainpipe.store import Store


def run(doc: dict, overrides=None, **kwargs) -> dict:
    config = config_from_dict(doc, overrides=overrides)
    return run_pipeline(config, Store.locate(config.store), **kwargs)


def statuses(summary: dict) -> dict:
    return {s["name"]: s["status"] for s in summary["stages"]}


# gate and register depend on the registry, not only on the run folder: they never come from the cache.
REGISTRY_STAGES = {"gate": "completed", "register": "completed"}


def data_statuses(summary: dict) -> set:
    return {status for name, status in statuses(summary).items() if name not in REGISTRY_STAGES}


def client(store: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")


def test_run_tracks_params_metrics_history_tags_and_artifacts(bc_config, store):
    summary = run(bc_config)
    assert summary["status"] == "completed"
    mlflow_run = client(store).get_run(summary["mlflow_run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.params["model.params.n_estimators"] == "40"
    assert mlflow_run.data.metrics["test_roc_auc"] == summary["metrics"]["test"]["roc_auc"] > 0.95
    tags = mlflow_run.data.tags
    for tag in ("trainpipe.data_fingerprint", "trainpipe.config_hash", "python_version", "host", "version.mlflow"):
        assert tag in tags
    # per-round values under history/, named like evaluate's final metric, which keeps its own key and value
    history = client(store).get_metric_history(summary["mlflow_run_id"], "history/validation_log_loss")
    iterations = json.loads(Path(summary["run_dir"], "train", "manifest.json").read_text())["summary"]["iterations"]
    assert len(history) == iterations and [m.step for m in history] == list(range(iterations))
    assert mlflow_run.data.metrics["validation_log_loss"] == summary["metrics"]["validation"]["log_loss"]
    assert not any(name.endswith("logloss") for name in mlflow_run.data.metrics)
    artifacts = {a.path for a in client(store).list_artifacts(summary["mlflow_run_id"])}
    assert {"config", "ingest", "validate", "split", "features", "train", "evaluate"} <= artifacts
    listed = {a.path for a in client(store).list_artifacts(summary["mlflow_run_id"], "train")}
    assert "train/model" in listed and "train/history.json" in listed


def test_torch_epochs_never_overwrite_evaluates_metrics_in_mlflow(bc_config, store):
    """MLflow shows a metric's latest step: epochs logged under evaluate's `validation_accuracy` key hid the
    evaluated model's value behind the last epoch's. Epochs go to `history/...`, live and at the stage's end."""
    doc = {**bc_config, "model": {"type": "torch_mlp", "params": {"epochs": 4, "hidden_dims": [8], "batch_size": 64}}}
    summary = run(doc)
    assert summary["status"] == "completed"
    mlflow_id = summary["mlflow_run_id"]
    final = client(store).get_metric_history(mlflow_id, "validation_accuracy")
    assert [(m.step, m.value) for m in final] == [(0, summary["metrics"]["validation"]["accuracy"])]
    history = json.loads(Path(summary["run_dir"], "train", "history.json").read_text())
    for name in ("validation_accuracy", "validation_loss", "train_loss"):
        points = sorted(client(store).get_metric_history(mlflow_id, f"history/{name}"), key=lambda m: m.step)
        assert [m.step for m in points] == list(range(len(history[name])))  # each epoch once: live, not re-sent
        assert [m.value for m in points] == pytest.approx(history[name])


def test_every_stage_writes_a_manifest_with_fingerprints(bc_config, store):
    summary = run(bc_config)
    for stage in ("ingest", "validate", "split", "features", "train", "evaluate"):
        manifest = json.loads(Path(summary["run_dir"], stage, "manifest.json").read_text())
        assert manifest["status"] == "completed" and manifest["cache_key"] and manifest["config_hash"]
        assert all(Path(summary["run_dir"], stage, f).exists() for f in manifest["files"])
    split = json.loads(Path(summary["run_dir"], "split", "split.json").read_text())
    assert split["strategy"] == "stratified" and sum(split["sizes"].values()) == 569


def test_same_config_data_and_seed_give_identical_metrics(churn_config, store):
    first = run(churn_config, use_cache=False)
    second = run(churn_config, use_cache=False)
    assert set(statuses(second).values()) == {"completed"}
    assert first["metrics"] == second["metrics"]


def test_unchanged_rerun_reuses_every_stage_from_the_earlier_run(bc_config, store):
    first = run(bc_config)
    second = run(bc_config)
    assert data_statuses(second) == {"reused"}
    assert {k: statuses(second)[k] for k in REGISTRY_STAGES} == REGISTRY_STAGES
    assert all(s["reused_from"] == first["run_id"] for s in second["stages"] if s["name"] not in REGISTRY_STAGES)
    assert second["metrics"] == first["metrics"]
    assert client(store).get_run(second["mlflow_run_id"]).data.metrics["test_roc_auc"] == first["metrics"]["test"]["roc_auc"]


def test_changing_model_params_recomputes_only_train_and_evaluate(bc_config, store):
    run(bc_config)
    changed = run(bc_config, overrides=["model.params.max_depth=2"])
    assert statuses(changed) == {"ingest": "reused", "validate": "reused", "split": "reused", "features": "reused",
                                 "train": "completed", "evaluate": "completed", **REGISTRY_STAGES}


def test_a_deleted_cached_artifact_is_recomputed_not_reused(bc_config, store):
    first = run(bc_config)
    Path(first["run_dir"], "features", "X_train.npy").unlink()
    second = run(bc_config)
    assert statuses(second)["features"] == "completed"
    assert statuses(second)["split"] == "reused"


def test_changed_data_gets_a_new_fingerprint_and_is_recomputed(bc_config, store, tmp_path):
    frame = pd.read_parquet(bc_config["data"]["path"])
    frame.to_parquet(tmp_path / "copy.parquet")
    doc = {**bc_config, "data": {**bc_config["data"], "path": str(tmp_path / "copy.parquet")}}
    first = run(doc)
    frame.loc[0, "mean_radius"] += 1.0
    frame.to_parquet(tmp_path / "copy.parquet")
    second = run(doc)
    assert statuses(second)["validate"] == "completed"
    assert first["stages"][0]["summary"]["fingerprint"] != second["stages"][0]["summary"]["fingerprint"]


FLAKY = """
import os
from sklearn.linear_model import LogisticRegression


class FlakyLogisticRegression(LogisticRegression):
    # fails while the flag file exists: stands in for a crash in the middle of a run
    def fit(self, X, y, sample_weight=None):
        if os.path.exists(os.environ["TRAINPIPE_TEST_FLAG"]):
            raise RuntimeError("simulated crash during training")
        return super().fit(X, y, sample_weight)
"""


@pytest.fixture
def flaky_config(bc_config, tmp_path, monkeypatch):
    (tmp_path / "flaky_models.py").write_text(textwrap.dedent(FLAKY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "flaky_models", raising=False)  # each test has its own copy
    flag = tmp_path / "fail-now"
    monkeypatch.setenv("TRAINPIPE_TEST_FLAG", str(flag))
    doc = {**bc_config, "model": {"type": "sklearn", "estimator": "flaky_models.FlakyLogisticRegression",
                                  "params": {"max_iter": 500}}}
    return doc, flag, tmp_path / "flaky_models.py"


def fail_in_training(doc: dict, flag: Path, store: Path) -> tuple[str, dict]:
    """Run the flaky pipeline with its failure switched on; return the run id and its run.json."""
    flag.touch()
    with pytest.raises(RuntimeError):
        run(doc)
    run_id = next(p.name for p in (store / "runs").iterdir())
    return run_id, json.loads((store / "runs" / run_id / "run.json").read_text())


def test_resume_continues_at_the_failed_stage_and_reuses_the_rest(flaky_config, store):
    doc, flag, _ = flaky_config
    run_id, meta = fail_in_training(doc, flag, store)
    assert meta["status"] == "failed" and meta["stages"]["train"]["status"] == "failed"
    assert not (store / "runs" / run_id / "train").exists() and not (store / "runs" / run_id / ".train.tmp").exists()
    mlflow_run = client(store).get_run(meta["mlflow_run_id"])
    assert mlflow_run.info.status == "FAILED" and "simulated crash" in mlflow_run.data.tags["trainpipe.error"]

    flag.unlink()
    resumed = run_pipeline(None, Store.locate(str(store)), resume=run_id)
    assert resumed["run_id"] == run_id and resumed["status"] == "completed"
    assert statuses(resumed) == {"ingest": "reused", "validate": "reused", "split": "reused", "features": "reused",
                                 "train": "completed", "evaluate": "completed", **REGISTRY_STAGES}
    assert client(store).get_run(meta["mlflow_run_id"]).info.status == "FINISHED"


def test_editing_a_user_estimator_invalidates_the_cached_training(flaky_config, store):
    doc, _, source = flaky_config
    run(doc)
    assert data_statuses(run(doc)) == {"reused"}
    source.write_text(source.read_text() + "\n# tuned the estimator\n")
    after_edit = run(doc)
    assert statuses(after_edit)["train"] == "completed" and statuses(after_edit)["features"] == "reused"


def test_tracking_can_be_disabled(bc_config, store):
    summary = run({**bc_config, "tracking": {"enabled": False}})
    assert summary["status"] == "completed" and summary["mlflow_run_id"] is None
    assert np.isfinite(summary["metrics"]["test"]["roc_auc"])


def test_a_resume_whose_tracking_fails_keeps_the_run_folder(flaky_config, store):
    doc, flag, _ = flaky_config
    run_id, meta = fail_in_training(doc, flag, store)
    meta["mlflow_run_id"] = None  # as if killed before the MLflow run id reached run.json
    (store / "runs" / run_id / "run.json").write_text(json.dumps(meta))
    (store / "mlflow.db").write_bytes(b"this is not a database")
    flag.unlink()
    with pytest.raises(Exception):
        run_pipeline(None, Store.locate(str(store)), resume=run_id)
    assert (store / "runs" / run_id / "features" / "manifest.json").exists()
