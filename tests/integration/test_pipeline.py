"""The pipeline in-process against a real MLflow SQLite store: tracking, determinism, caching, resume."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from rich.console import Console

from trainpipe.config import config_from_dict
from trainpipe.errors import RunError
from trainpipe.pipeline.driver import run_one_stage, run_pipeline
from trainpipe.cli.render import stage_line
from trainpipe.pipeline.run_folder import file_digests
from trainpipe.store import Store


def run(doc: dict, overrides=None, **kwargs) -> dict:
    config = config_from_dict(doc, overrides=overrides)
    return run_pipeline(config, Store.locate(config.store), **kwargs)


def statuses(summary: dict) -> dict:
    return {s["name"]: s["status"] for s in summary["stages"]}


# drift, gate and register depend on the registry, not only on the run folder, and report on the whole run
# folder: they never come from the cache.
REGISTRY_STAGES = {"drift": "completed", "gate": "completed", "register": "completed", "report": "completed"}


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
        assert manifest["digests"] == file_digests(Path(summary["run_dir"], stage))  # content, not only sizes
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


def shuffle_rows_in_place(path: Path) -> np.ndarray:
    """Rewrite a matrix with its rows permuted: same file, same size, other content. Returns the original."""
    size, original = path.stat().st_size, np.load(path)
    np.save(path, original[np.random.default_rng(0).permutation(len(original))])
    assert path.stat().st_size == size
    return original


def stage_of(summary: dict, name: str) -> dict:
    return next(s for s in summary["stages"] if s["name"] == name)


def test_a_cached_output_changed_in_place_at_the_same_size_is_recomputed_not_reused(bc_config, store):
    first = run(bc_config)
    original = shuffle_rows_in_place(Path(first["run_dir"], "features", "X_train.npy"))
    second = run(bc_config)
    features = stage_of(second, "features")
    assert features["status"] == "completed"
    assert f"run {first['run_id']}" in features["recomputed_because"] and "X_train.npy" in features["recomputed_because"]
    assert statuses(second)["split"] == "reused"
    assert np.array_equal(np.load(Path(second["run_dir"], "features", "X_train.npy")), original)
    assert second["metrics"] == first["metrics"]
    console = Console(record=True, width=300)  # and the stage line says why it was not reused
    stage_line(console, json.loads(Path(second["run_dir"], "features", "manifest.json").read_text()))
    line = console.export_text()
    assert "not reused" in line and "files changed since they were written: X_train.npy" in line
    third = run(bc_config)  # the recomputed entry is the one the cache now points at
    assert stage_of(third, "features")["status"] == "reused" and stage_of(third, "features")["reused_from"] == second["run_id"]


def test_a_stage_of_the_same_run_changed_on_disk_is_recomputed_when_run_again(bc_config, store):
    config = config_from_dict(bc_config)
    run_pipeline(config, Store.locate(config.store), run_id="r1", until="features")
    shuffle_rows_in_place(store / "runs" / "r1" / "features" / "X_test.npy")
    summary = run_one_stage(Store.locate(config.store), "r1", "features")
    features = stage_of(summary, "features")
    assert features["status"] == "completed" and "this run's" in features["recomputed_because"]


def test_a_cached_stage_recorded_without_content_hashes_is_recomputed(bc_config, store):
    first = run(bc_config)
    manifest_file = Path(first["run_dir"], "features", "manifest.json")
    manifest = json.loads(manifest_file.read_text())
    del manifest["digests"]  # as written before content hashes were recorded
    manifest_file.write_text(json.dumps(manifest))
    features = stage_of(run(bc_config), "features")
    assert features["status"] == "completed" and "no content hashes" in features["recomputed_because"]


def test_a_run_held_by_another_process_is_refused_until_that_process_dies(bc_config, store):
    config = config_from_dict(bc_config)
    run_pipeline(config, Store.locate(config.store), run_id="busy", until="split")
    hold = ("import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1], timeout=0); "
            "lock.acquire(); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(store / "runs" / "busy" / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match="run busy is in use by another trainpipe process"):
            run_pipeline(None, Store.locate(config.store), resume="busy")
        with pytest.raises(RunError, match="in use by another trainpipe process"):
            run_one_stage(Store.locate(config.store), "busy", "features")
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the kernel frees the lock
        holder.wait()
    assert run_pipeline(None, Store.locate(config.store), resume="busy")["status"] == "completed"


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
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="file is not a database"):  # the store's own error, not another one
        run_pipeline(None, Store.locate(str(store)), resume=run_id)
    assert (store / "runs" / run_id / "features" / "manifest.json").exists()


KILLED_MID_WRITE = textwrap.dedent("""
    import json, os, sys, threading
    import trainpipe.stages.array_writes as array_writes
    import trainpipe.pipeline.stages as stages
    from trainpipe.config import config_from_dict
    from trainpipe.pipeline.driver import run_pipeline
    from trainpipe.store import Store

    def half_then_stuck(handle, header, data):  # the writer thread, paced by the kernel, when the kill comes
        handle.write(header)
        handle.write(data[: len(data) // 2])
        handle.flush()
        threading.Event().wait()

    array_writes._write = half_then_stuck
    stages.RUNNERS["train"] = lambda ctx: os._exit(137)  # SIGKILL during train: nothing runs after it
    config = config_from_dict(json.loads(sys.argv[1]))
    run_pipeline(config, Store.locate(config.store), run_id="r1")
""")


def test_a_run_killed_while_the_features_files_are_still_being_written_recomputes_them_on_resume(bc_config, store):
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, json.dumps(bc_config)], capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr
    features = store / "runs" / "r1" / "features"
    recorded = json.loads((features / "manifest.json").read_text())["files"]
    assert (features / "X_train.npy").stat().st_size < recorded["X_train.npy"]  # committed, then cut short
    resumed = run_pipeline(None, Store.locate(str(store)), resume="r1")
    assert resumed["status"] == "completed" and stage_of(resumed, "features")["status"] == "completed"
    assert np.load(features / "X_train.npy").shape[0] > 0
    assert json.loads((features / "manifest.json").read_text())["digests"] == file_digests(features)
    assert resumed["metrics"] == run(bc_config)["metrics"]  # the same as an uninterrupted run's
