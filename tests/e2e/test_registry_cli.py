"""The issue's "done means", through the real CLI: a worse model is blocked by the champion gate, a better
one is promoted, a rollback restores the old champion, and `predict` on the raw file reproduces evaluate."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.e2e


def xgb(bc_config: dict, n_estimators: int, max_depth: int) -> dict:
    return {**bc_config, "model": {"type": "xgboost", "params": {"n_estimators": n_estimators, "max_depth": max_depth}}}


def test_gate_blocks_worse_promotes_better_rolls_back_and_predict_matches_evaluate(
        cli_json, write_config, bc_config, store, data_dir, tmp_path, monkeypatch):
    store_args = ("--store", str(store))
    code, first = cli_json("run", str(write_config(xgb(bc_config, 3, 1), "first.yaml")))  # test roc_auc ≈ 0.986
    assert code == 0, first
    assert first["gate"]["champion"]["status"] == "skipped" and "no champion" in first["gate"]["champion"]["reason"]
    assert first["registered"]["version"] == "1" and first["registered"]["aliases"] == ["challenger", "champion"]

    code, worse = cli_json("run", str(write_config(xgb(bc_config, 1, 1), "worse.yaml")))  # ≈ 0.881
    assert code == 3 and worse["type"] == "GateFailed" and worse["key"] == "gates.champion.max_regression"
    assert worse["decision"]["champion"]["champion_version"] == "1" and worse["decision"]["champion"]["improvement"] < 0
    failed_run = max((store / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    assert json.loads((failed_run / "run.json").read_text())["status"] == "failed"
    assert not (failed_run / "register").exists() and (failed_run / "gate.failed" / "decision.json").exists()

    code, better = cli_json("run", str(write_config(xgb(bc_config, 10, 2), "better.yaml")))  # ≈ 0.997
    assert code == 0, better
    champion = better["gate"]["champion"]
    assert champion["status"] == "compared" and champion["champion_version"] == "1" and champion["improvement"] > 0
    assert champion["ci"]["low"] <= champion["difference"] <= champion["ci"]["high"]
    assert better["registered"]["version"] == "2" and better["registered"]["promoted"]  # the worse run registered nothing

    code, moved = cli_json("models", "rollback", "bc", *store_args)
    assert code == 0 and (moved["from"], moved["to"], moved["action"]) == ("2", "1", "rollback")
    code, history = cli_json("models", "history", "bc", *store_args)
    assert [(e["alias"], e["from"], e["to"], e["action"]) for e in history["history"]] == [
        ("challenger", None, "1", "challenger"), ("champion", None, "1", "auto-promote"),
        ("challenger", "1", "2", "challenger"), ("champion", "1", "2", "auto-promote"),
        ("champion", "2", "1", "rollback")]
    assert history["history"][3]["run"] == better["run_id"]

    code, described = cli_json("models", "describe", "bc@champion", *store_args)
    assert code == 0 and described["version"] == "1" and described["sha256_verified"]
    tags = described["tags"]
    assert tags["trainpipe.run_id"] == first["run_id"] and tags["trainpipe.parent_champion"] == "none"
    in_git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True).returncode == 0
    for key in ("trainpipe.data_fingerprint", "trainpipe.split_hash", "trainpipe.config_hash", "version.mlflow",
                "trainpipe.gate", "trainpipe.sha256") + (("git_commit",) if in_git else ()):
        assert tags.get(key), key
    assert "## Metrics" in described["card"] and "## Lineage" in described["card"]

    # predict on the raw file: the champion's scores on the test rows equal evaluate's
    code, predicted = cli_json("predict", "models:/bc@champion", str(data_dir / "bc.parquet"), "--out",
                               str(tmp_path / "pred.parquet"), *store_args)
    assert code == 0, predicted
    assert predicted["rows"] == 569 and predicted["rows_per_s"] > 0
    out = pd.read_parquet(tmp_path / "pred.parquet")
    assert list(out.columns) == ["prediction", "proba_benign", "proba_malignant"]
    run_dir = Path(first["run_dir"])
    with np.load(run_dir / "split" / "split.npz") as split:
        test_rows = split["test"]
    evaluated = np.load(run_dir / "evaluate" / "test_scores.npy")
    np.testing.assert_allclose(out[["proba_benign", "proba_malignant"]].to_numpy()[test_rows], evaluated, rtol=1e-6)

    # the same package through the MLflow run that logged it
    mlflow_run = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    code, by_run = cli_json("predict", f"runs:/{mlflow_run}/model", str(data_dir / "bc.parquet"), "--out",
                            str(tmp_path / "by_run.parquet"), *store_args)
    assert code == 0 and by_run["model"] == f"runs:/{mlflow_run}/model", by_run
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "by_run.parquet"), out)

    # the standard MLflow way loads the same model on raw columns
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    raw = pd.read_parquet(data_dir / "bc.parquet").drop(columns=["diagnosis"])
    pyfunc_out = mlflow.pyfunc.load_model("models:/bc@champion").predict(raw)
    np.testing.assert_allclose(pyfunc_out["proba_malignant"].to_numpy(), out["proba_malignant"].to_numpy())


@pytest.mark.extended
def test_a_finished_run_registered_again_keeps_its_version_and_the_champion_intact(
        cli_json, write_config, bc_config, store, data_dir, tmp_path):
    """Issue 10 §1, its exact sequence: resume a finished run, register its stage again, predict with the
    champion, then a changed run meets the champion gate normally."""
    store_args = ("--store", str(store))
    base = write_config(bc_config, "base.yaml")
    code, first = cli_json("run", str(base), "--run-id", "r1")
    assert code == 0 and first["registered"]["version"] == "1", first
    _, history = cli_json("models", "history", "bc", *store_args)

    code, resumed = cli_json("run", "--resume", "r1", *store_args)
    assert code == 0, resumed
    assert resumed["registered"]["version"] == "1" and "already registered bc v1" in resumed["registered"]["note"]
    assert resumed["gate"]["already_registered"]["version"] == "1"  # the earlier decision, not a new one
    code, staged = cli_json("stage", "register", "--run", "r1", *store_args)
    assert code == 0 and staged["registered"]["version"] == "1", staged

    code, listed = cli_json("models", "list", "bc", *store_args)
    assert [v["version"] for v in listed["versions"]] == ["1"]
    assert cli_json("models", "history", "bc", *store_args)[1] == history  # no alias moved, nothing audited
    for model in ("models:/bc@champion", "r1"):
        code, predicted = cli_json("predict", model, str(data_dir / "bc.parquet"), "--out", str(tmp_path / "p.parquet"),
                                   *store_args)
        assert code == 0, predicted

    code, later = cli_json("run", str(base), "--set", "model.params.n_estimators=61")
    assert code == 0, later
    assert later["gate"]["champion"]["status"] == "compared" and later["gate"]["champion"]["champion_version"] == "1"
    assert later["registered"]["version"] == "2"


@pytest.mark.extended
def test_a_broken_champion_fails_the_gate_with_the_commands_that_repair_it(
        cli, cli_json, write_config, bc_config, store):
    store_args = ("--store", str(store))
    base = write_config(bc_config, "base.yaml")
    assert cli_json("run", str(base))[0] == 0
    code, second = cli_json("run", str(base), "--set", "model.params.n_estimators=61")  # a tie: v2 stays challenger
    assert code == 0 and second["registered"]["aliases"] == ["challenger"], second
    _, described = cli_json("models", "describe", "bc/1", *store_args)
    package = Path(described["source"].removeprefix("file://"))
    (package / "MLmodel").write_text((package / "MLmodel").read_text() + "\n# edited\n")

    proc = cli("run", str(base), "--set", "model.params.n_estimators=62")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "the champion's package is broken: model bc/1: packaged files changed since registration" in line
    assert "`trainpipe models rollback bc`" in line and "`trainpipe models promote bc VERSION`" in line
    assert "[gates.champion]" in line and "nothing was registered" in line
    code, listed = cli_json("models", "list", "bc", *store_args)
    assert [v["version"] for v in listed["versions"]] == ["2", "1"]

    assert cli_json("models", "promote", "bc", "2", *store_args)[0] == 0  # the repair the message names
    code, repaired = cli_json("run", str(base), "--set", "model.params.n_estimators=62")
    assert code == 0 and repaired["gate"]["champion"]["champion_version"] == "2", repaired


@pytest.mark.extended
def test_models_list_and_promote_through_the_cli_move_the_champion_by_compare_and_set(cli, cli_json, write_config,
                                                                                      bc_config, store):
    store_args = ("--store", str(store))
    base = write_config(bc_config, "base.yaml")
    assert cli_json("run", str(base))[0] == 0
    code, second = cli_json("run", str(base), "--set", "model.params.n_estimators=61")  # a tie: v2 stays challenger
    assert code == 0 and second["registered"]["aliases"] == ["challenger"], second

    code, models = cli_json("models", "list", *store_args)  # every registered model (the lock's are hidden)
    assert code == 0 and models["models"] == [{"name": "bc", "aliases": {"champion": "1", "challenger": "2"},
                                               "latest": 2}], models
    text = cli("models", "list", "bc", *store_args)
    assert text.returncode == 0 and "Model bc" in text.stdout and "@champion" in text.stdout, text.stderr
    rows = [line for line in text.stdout.splitlines() if "@" in line]  # newest version first: v2, then v1
    assert len(rows) == 2 and "@challenger" in rows[0] and "@champion" in rows[1], text.stdout

    code, moved = cli_json("models", "promote", "bc", "2", "--expect", "1", "--reason", "reviewed", *store_args)
    assert code == 0 and (moved["alias"], moved["from"], moved["to"], moved["action"], moved["reason"]) == (
        "champion", "1", "2", "promote", "reviewed"), moved
    code, listed = cli_json("models", "list", "bc", *store_args)
    assert [(v["version"], v["aliases"]) for v in listed["versions"]] == [("2", ["challenger", "champion"]), ("1", [])]

    stale = cli("models", "promote", "bc", "1", "--expect", "1", *store_args)  # the champion moved meanwhile
    assert stale.returncode == 2 and "Traceback" not in stale.stderr, stale.stderr
    assert "@champion now points at version 2, not version 1" in stale.stderr and "nothing changed" in stale.stderr
    code, history = cli_json("models", "history", "bc", *store_args)
    assert [(e["from"], e["to"], e["action"]) for e in history["history"] if e["alias"] == "champion"] == [
        (None, "1", "auto-promote"), ("1", "2", "promote")]  # the refused move left no entry
