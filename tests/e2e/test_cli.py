"""The real `trainpipe` command in subprocesses, read through --json the way scripts read it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml


STAGES = ["ingest", "validate", "split", "features", "train", "evaluate", "drift", "gate", "register", "report"]


def test_run_json_reports_status_stages_metrics_and_artifacts(cli_json, write_config, bc_config):
    code, doc = cli_json("run", str(write_config(bc_config)))
    assert code == 0 and doc["status"] == "completed"
    assert [s["name"] for s in doc["stages"]] == STAGES
    assert set(doc["metrics"]) == {"validation", "test"} and doc["metrics"]["test"]["roc_auc"] > 0.95
    for key in ("model", "preprocessor", "metrics", "config"):
        assert Path(doc["artifacts"][key]).exists()


def test_run_prints_a_human_summary_with_the_mlflow_ui_command(cli, write_config, bc_config):
    proc = cli("run", str(write_config(bc_config)))
    assert proc.returncode == 0, proc.stderr
    for text in ("data checks passed", "train", "test", "roc_auc", "mlflow ui --backend-store-uri sqlite:///"):
        assert text in proc.stdout


@pytest.mark.extended
def test_a_run_without_tracking_prints_no_mlflow_progress_bars(cli, write_config, bc_config):
    """With tracking on, the tracker turned MLflow's artifact progress bars off; without it, packaging the model
    drew three 'Downloading artifacts' bars on stderr."""
    proc = cli("run", str(write_config({**bc_config, "tracking": {"enabled": False}})))
    assert proc.returncode == 0, proc.stderr
    assert "Downloading artifacts" not in proc.stderr and "it/s]" not in proc.stderr


@pytest.mark.reliability  # ~1 min; `make test` covers stages in separate processes through the Airflow DAG runs
def test_stage_by_stage_in_separate_processes_equals_one_run(cli_json, write_config, bc_config, store):
    config = str(write_config(bc_config))
    code, whole = cli_json("run", config, "--no-cache")
    assert code == 0
    for stage in STAGES:
        code, doc = cli_json("stage", stage, "--run", "by-stage", "--config", config, "--no-cache")
        assert code == 0, doc
        assert {s["name"]: s["status"] for s in doc["stages"]}[stage] == "completed"
    assert doc["status"] == "completed"
    assert doc["metrics"] == whole["metrics"]
    one = Path(whole["run_dir"], "train", "model", "model.ubj").read_bytes()
    assert Path(doc["run_dir"], "train", "model", "model.ubj").read_bytes() == one
    for name in ("X_train.npy", "X_test.npy", "y_test.npy"):
        assert np.array_equal(np.load(Path(whole["run_dir"], "features", name)), np.load(Path(doc["run_dir"], "features", name)))


def test_a_stage_refuses_to_run_before_its_upstream(cli_json, write_config, bc_config):
    code, doc = cli_json("stage", "train", "--run", "early", "--config", str(write_config(bc_config)))
    assert code == 2 and "needs stage features" in doc["error"]


def test_validate_json_passes_then_fails_on_a_broken_schema(cli_json, write_config, bc_config):
    code, doc = cli_json("validate", str(write_config(bc_config)))
    assert code == 0 and doc["passed"] and doc["rows"] == 569
    bad = {**bc_config, "schema": {"columns": {"mean_radius": {"dtype": "float", "max": 10, "strict": True}}}}
    code, doc = cli_json("validate", str(write_config(bad)))
    assert code == 2 and not doc["passed"] and "mean_radius" in doc["errors"][0]["message"]


@pytest.mark.extended
def test_runs_list_and_compare(cli_json, write_config, bc_config, store):
    path = str(write_config(bc_config))
    _, first = cli_json("run", path)
    _, second = cli_json("run", path, "--set", "model.params.max_depth=2")
    code, listed = cli_json("runs", "list", "--store", str(store))
    assert code == 0 and [r["run_id"] for r in listed["runs"]] == [second["run_id"], first["run_id"]]
    assert listed["runs"][0]["primary_metric"] == "roc_auc" and listed["runs"][0]["test"] is not None
    code, compared = cli_json("runs", "compare", first["run_id"], second["run_id"], "--store", str(store))
    assert code == 0
    assert compared["params_that_differ"] == {"model.params.max_depth": ["3", "2"]}
    assert "test_roc_auc" in compared["metrics"]
    # one name per metric: the per-round curve (history/validation_log_loss in MLflow) is not a second row
    assert "validation_log_loss" in compared["metrics"]
    assert not [name for name in compared["metrics"] if "logloss" in name or name.startswith("history/")]


def test_schema_infer_writes_an_editable_schema_that_validates_the_data(cli, data_dir, tmp_path):
    proc = cli("schema", "infer", str(data_dir / "churn.csv"))
    assert proc.returncode == 0, proc.stderr
    schema = yaml.safe_load(proc.stdout)
    assert schema["columns"]["contract"]["allowed"] == ["month-to-month", "one year", "two year"]
    assert schema["columns"]["monthly_charges"]["nullable"] is True


def telco_like(rows: int = 2500, seed: int = 11) -> pd.DataFrame:
    """A table unlike the fixtures: numbers stored as text with blanks, 0/1 ints, Yes/No labels, an id."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows)
    monthly = rng.uniform(18, 120, rows).round(2)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], rows, p=[0.55, 0.25, 0.2])
    internet = rng.choice(["DSL", "Fiber optic", "No"], rows)
    senior = rng.integers(0, 2, rows)
    logit = -0.5 - 0.05 * tenure + 0.02 * monthly + np.where(contract == "Month-to-month", 1.3, -0.8) + 0.4 * senior
    churn = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    total = (tenure * monthly).round(2).astype(str)
    total[tenure == 0] = " "
    frame = pd.DataFrame({"customerID": [f"{i:04d}-ABCD" for i in range(rows)], "SeniorCitizen": senior,
                          "tenure": tenure, "Contract": contract, "InternetService": internet,
                          "MonthlyCharges": monthly, "TotalCharges": total, "Churn": churn})
    frame.loc[rng.random(rows) < 0.05, "InternetService"] = np.nan
    return frame


def test_init_writes_a_pipeline_that_runs_unedited_on_an_unseen_table(cli_json, tmp_path, store):
    telco_like().to_csv(tmp_path / "telco.csv", index=False)
    code, doc = cli_json("init", str(tmp_path / "proj"), "--data", str(tmp_path / "telco.csv"), "--target", "Churn")
    assert code == 0 and doc["task"] == "binary" and doc["id_columns"] == ["customerID"]
    assert doc["coerced"] == ["TotalCharges"] and doc["positive_class"] == "Yes"
    code, result = cli_json("run", str(tmp_path / "proj" / "pipeline.yaml"))
    assert code == 0, result
    assert result["status"] == "completed" and result["metrics"]["test"]["roc_auc"] > 0.7


def test_init_torch_mlp_writes_a_torch_pipeline_that_runs(cli_json, tmp_path, store):
    telco_like(rows=600).to_csv(tmp_path / "telco.csv", index=False)
    code, doc = cli_json("init", str(tmp_path / "proj"), "--data", str(tmp_path / "telco.csv"), "--target", "Churn",
                         "--model", "torch_mlp")
    assert code == 0 and doc["model"] == "torch_mlp"
    model = yaml.safe_load((tmp_path / "proj" / "pipeline.yaml").read_text())["model"]
    assert model["type"] == "torch_mlp" and "estimator" not in model  # was sklearn's HistGradientBoostingClassifier
    code, result = cli_json("run", str(tmp_path / "proj" / "pipeline.yaml"), "--set", "model.params.epochs=3")
    assert code == 0, result
    assert result["status"] == "completed" and result["metrics"]["test"]["roc_auc"] > 0.6


def test_init_offers_every_tabular_family_and_writes_an_estimator_only_for_sklearn(cli_json, tmp_path, data_dir):
    for family in ("xgboost", "lightgbm", "sklearn", "torch_mlp"):
        code, doc = cli_json("init", str(tmp_path / family), "--data", str(data_dir / "churn.csv"), "--target", "churn",
                             "--model", family)
        assert code == 0, doc
        model = yaml.safe_load((tmp_path / family / "pipeline.yaml").read_text())["model"]
        assert model["type"] == family and ("estimator" in model) == (family == "sklearn")
    code, doc = cli_json("init", str(tmp_path / "x"), "--data", str(data_dir / "churn.csv"), "--target", "churn",
                         "--model", "two_tower")
    assert code == 2 and doc["error"] == ("--model: expected one of xgboost, lightgbm, sklearn, torch_mlp, "
                                          "got 'two_tower'")


def test_init_refuses_to_overwrite_without_force(cli_json, tmp_path, data_dir):
    args = ("init", str(tmp_path / "p"), "--data", str(data_dir / "churn.csv"), "--target", "churn")
    assert cli_json(*args)[0] == 0
    code, doc = cli_json(*args)
    assert code == 2 and "--force" in doc["error"]
    assert cli_json(*args, "--force")[0] == 0


@pytest.mark.parametrize("task,target", [("multiclass", "species"),
                                         pytest.param("regression", "progression", marks=pytest.mark.extended)])
def test_init_and_run_other_tasks(cli_json, tmp_path, store, task, target):
    from sklearn.datasets import load_diabetes, load_iris

    loader = load_iris if task == "multiclass" else load_diabetes
    frame = loader(as_frame=True).frame.rename(columns={"target": target})
    if task == "multiclass":
        frame[target] = np.array(["setosa", "versicolor", "virginica"])[frame[target]]
    frame.to_parquet(tmp_path / "d.parquet")
    code, doc = cli_json("init", str(tmp_path / "proj"), "--data", str(tmp_path / "d.parquet"), "--target", target)
    assert code == 0 and doc["task"] == task
    code, result = cli_json("run", str(tmp_path / "proj" / "pipeline.yaml"))
    assert code == 0, result
    headline = result["metrics"]["test"]["f1_macro" if task == "multiclass" else "r2"]
    assert headline > (0.8 if task == "multiclass" else 0.2)


def test_version_prints_the_package_version_as_text_and_json(cli):
    from trainpipe import __version__

    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout == f"trainpipe {__version__}\n"
    proc = cli("--version", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"version": __version__}


def test_help_does_not_import_heavy_libraries(cli):
    proc = cli("--help")
    assert proc.returncode == 0 and "run" in proc.stdout
    import subprocess
    import sys

    check = subprocess.run([sys.executable, "-c", "import sys, trainpipe.cli; "
                            "print(any(m.split('.')[0] in ('torch', 'mlflow', 'sklearn', 'xgboost', 'airflow') for m in sys.modules))"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "False"
