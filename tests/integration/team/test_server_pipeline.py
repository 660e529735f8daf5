"""The embedded default's code path, on PostgreSQL behind an MLflow tracking server: run → registered version →
gate against the champion fetched from the server → predict and the registry commands from another machine's
store (nothing shared but the tracking URI)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli, run_cli_json
from trainpipe.registry.client import Registry
from trainpipe.store import Store
from trainpipe.tracking.config import TrackingConfig

pytestmark = pytest.mark.team


def test_pipeline_on_the_server_registers_and_another_machine_predicts_with_the_champion(team, bc_config,
                                                                                          write_config, tmp_path,
                                                                                          data_dir):
    config = write_config({**bc_config, "name": "bc_server", "tracking": {"uri": team.tracking_uri},
                           "gates": {"champion": {"max_regression": 1.0, "bootstrap_resamples": 50}}})
    proc = run_cli("run", str(config), "--json", env=team.env)
    first = json.loads(proc.stdout)
    assert proc.returncode == 0, first
    assert "View run" not in proc.stderr  # MLflow's per-run URL lines stay off the console
    assert first["registered"]["version"] == "1" and first["registered"]["promoted"]
    # the gate of a second run loads the champion back from the server (its artifact store, not a local path);
    # same split (another seed would leave too few test rows the champion did not train on: test_champion_rows)
    code, second = run_cli_json("run", str(config), "--set", "model.params.max_depth=2", env=team.env)
    assert code == 0, second
    assert second["registered"]["version"] == "2"
    assert second["gate"]["champion_version"] == "1" and second["gate"]["champion"]["status"] != "skipped"

    client = MlflowClient(tracking_uri=team.tracking_uri)
    experiment = client.get_experiment_by_name("bc_server")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server's, readable by every client
    for version in ("1", "2"):
        assert client.get_model_version("bc_server", version).source.startswith("mlflow-artifacts:")
    run = client.get_run(first["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["test_roc_auc"] > 0.9

    elsewhere = tmp_path / "another-machine"  # a fresh store: no run folders, no local MLflow database
    out = tmp_path / "predictions.parquet"
    code, predicted = run_cli_json("predict", "models:/bc_server@champion", str(data_dir / "bc.parquet"), "--out",
                                   str(out), "--tracking-uri", team.tracking_uri, "--store", str(elsewhere),
                                   env=team.env)
    assert code == 0, predicted
    champion = str(client.get_registered_model("bc_server").aliases["champion"])
    assert predicted["model"] == f"bc_server/{champion}"
    assert len(pd.read_parquet(out)) == len(pd.read_parquet(data_dir / "bc.parquet"))
    assert not (elsewhere / "mlflow.db").exists()  # everything came from the server
    sha = client.get_model_version("bc_server", champion).tags["trainpipe.sha256"]
    assert [p.name for p in (elsewhere / "cache" / "registry").iterdir()] == [sha]  # kept once, no temp folders

    registry = Registry(Store.locate(str(elsewhere), team.tracking_uri), TrackingConfig(uri=team.tracking_uri))
    moves = [e for e in registry.history("bc_server") if e["alias"] == "champion"]
    assert moves[0]["from"] is None and all(isinstance(e.get("seq"), int) for e in moves)
    assert moves[-1]["to"] == str(champion)
    if champion != "2":  # the second run registered v2; make it champion by hand (promote, then roll back)
        registry.promote("bc_server", "2", expected=str(champion), reason="the team prefers v2")
    rolled = registry.rollback("bc_server", reason="the team changed its mind")  # through the server's lock too
    assert rolled["to"] == "1" and rolled["seq"] > moves[-1]["seq"]
    assert registry.alias_version("bc_server", "champion") == "1"
    listed = [m["name"] for m in registry.models()]
    assert "bc_server" in listed and not [n for n in listed if n.startswith("trainpipe-lock.")]  # lock hidden
