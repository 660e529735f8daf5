"""Secrets through the real CLI: after runs with a password in the environment (and a token written in the
YAML), no file of the store — run folders, manifests, run.json, config.yaml, cache index, MLflow's database
and artifacts, Optuna's database, tuning job files and logs — nor the command's output holds them; resume
reads them from the environment again. Issue 10: `${oc.env:DB_PASSWORD}` in `tuning.storage` and
`tracking.tags` reached MLflow params and tags, runs/<id>/config.yaml and the MLflow config artifact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.e2e

PASSWORD = "hunter2-Pw-4c1d"
ROTATED = "rotated-Pw-77e0"
LITERAL_TOKEN = "tok-literal-9b2f"


def files_holding(root: Path, *secrets: str) -> list[str]:
    """Every file under root whose bytes contain one of the secrets (SQLite stores text as plain UTF-8)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {s}" for s in secrets if s.encode() in data]
    return found


def secret_config(bc_config: dict) -> dict:
    return {**bc_config,
            "tracking": {"tags": {"db": "${oc.env:DB_PASSWORD}", "team": "${oc.env:TP_TEAM}"}},
            "tuning": {"storage": "postgresql://trainer:${oc.env:DB_PASSWORD}@db.internal:5432/optuna"}}


def mlflow_run(store: Path, run_id: str):
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments, f"tags.`trainpipe.run_id` = '{run_id}'")
    return client, run


def test_a_run_records_no_secret_anywhere_and_uses_the_real_values(bc_config, write_config, store, cli):
    doc = secret_config(bc_config)
    doc["tracking"]["tags"]["api_token"] = LITERAL_TOKEN  # a credential written in the YAML itself
    doc["tracking"]["experiment"] = "${oc.env:TP_TEAM}-experiments"  # a name trainpipe needs: used as it is
    path = write_config(doc)
    proc = cli("run", str(path), "--json", env={"DB_PASSWORD": PASSWORD, "TP_TEAM": "fraud"}, cwd=path.parent)
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr and LITERAL_TOKEN not in proc.stdout + proc.stderr
    assert files_holding(store, PASSWORD, LITERAL_TOKEN) == []

    run_id = json.loads(proc.stdout)["run_id"]
    client, run = mlflow_run(store, run_id)
    assert client.get_experiment(run.info.experiment_id).name == "fraud-experiments"
    assert run.data.tags["db"] == "${oc.env:DB_PASSWORD}" and run.data.tags["api_token"] == "<redacted>"
    assert run.data.params["tuning.storage"] == "postgresql://trainer:${oc.env:DB_PASSWORD}@db.internal:5432/optuna"
    assert run.data.params["tracking.tags.team"] == "${oc.env:TP_TEAM}"
    artifact = Path(client.download_artifacts(run.info.run_id, "config/config.yaml", str(store.parent)))
    assert "${oc.env:DB_PASSWORD}" in artifact.read_text() and PASSWORD not in artifact.read_text()


@pytest.mark.extended
def test_resume_reads_secrets_from_the_environment_again_and_survives_a_rotated_password(
        bc_config, write_config, store, cli):
    path = write_config(secret_config(bc_config))
    first = cli("stage", "ingest", "--run", "weekly", "--config", str(path), env={"DB_PASSWORD": PASSWORD, "TP_TEAM": "a"},
                cwd=path.parent)
    assert first.returncode == 0, first.stderr

    unset = cli("run", "--resume", "weekly", env={"TP_TEAM": "a"}, cwd=path.parent)
    assert unset.returncode == 2 and "Traceback" not in unset.stderr
    assert "DB_PASSWORD" in unset.stderr and "tracking.tags.db" in unset.stderr, unset.stderr

    changed = cli("run", "--resume", "weekly", env={"DB_PASSWORD": PASSWORD, "TP_TEAM": "b"}, cwd=path.parent)
    assert changed.returncode == 2 and "resolves differently" in changed.stderr, changed.stderr

    resumed = cli("run", "--resume", "weekly", env={"DB_PASSWORD": ROTATED, "TP_TEAM": "a"}, cwd=path.parent)
    assert resumed.returncode == 0, resumed.stderr
    meta = json.loads((store / "runs" / "weekly" / "run.json").read_text())
    assert meta["status"] == "completed" and meta["stages"]["ingest"]["status"] == "reused"
    assert files_holding(store, PASSWORD, ROTATED) == []


@pytest.mark.extended
def test_a_run_folder_with_a_literal_secret_asks_for_the_pipeline_file_on_resume(bc_config, write_config, store, cli):
    doc = {**bc_config, "tracking": {"tags": {"api_token": LITERAL_TOKEN}}}
    path = write_config(doc)
    assert cli("stage", "ingest", "--run", "r1", "--config", str(path), cwd=path.parent).returncode == 0
    proc = cli("run", "--resume", "r1", cwd=path.parent)
    assert proc.returncode == 2 and "tracking.tags.api_token" in proc.stderr and "--resume r1" in proc.stderr
    resumed = cli("run", str(path), "--resume", "r1", cwd=path.parent)
    assert resumed.returncode == 0, resumed.stderr
    assert files_holding(store, LITERAL_TOKEN) == []


@pytest.mark.extended
def test_tune_with_workers_records_no_secret(bc_config, write_config, store, cli):
    doc = {**bc_config, "tracking": {"tags": {"db": "${oc.env:DB_PASSWORD}"}},
           "tuning": {"space": {"max_depth": {"type": "int", "low": 2, "high": 4}}, "workers": 2, "plots": False}}
    path = write_config(doc)
    proc = cli("tune", str(path), "--trials", "4", env={"DB_PASSWORD": PASSWORD}, cwd=path.parent)
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    (run_dir,) = (store / "runs").iterdir()
    job = json.loads((run_dir / "tune" / "job.json").read_text())
    assert job["config"]["tracking"]["tags"]["db"] == "${oc.env:DB_PASSWORD}"
    assert files_holding(store, PASSWORD) == []
