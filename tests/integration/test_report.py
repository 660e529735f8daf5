"""Each report section collected from real runs (binary, multiclass, regression, ranking, tuned, failed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainpipe.reports.build import make_sections, write_report
from trainpipe.reports.folder import RunFolder
from trainpipe.reports.tracked import Tracked, lookup
from trainpipe.reports.view import Limits

ALL = ["header", "data", "training", "evaluation", "slices", "importance", "tuning", "monitoring", "lineage"]


def sections_of(run_dir, tracked: bool = True, limits: Limits = Limits()) -> dict:
    folder = RunFolder.open(run_dir)
    found, problems = make_sections(folder, lookup(folder) if tracked else Tracked(reason="off"), limits, strict=True)
    assert not problems
    return {s.key: s for s in found}


def facts(section) -> dict:
    return dict(section.facts)


def figure_titles(section) -> list[str]:
    return [f.title for f in section.figures]


def table(section, title_start: str):
    return next(t for t in section.tables if t.title.startswith(title_start))


def test_binary_run_has_every_section_with_its_data(report_runs):
    run_dir = report_runs.get("binary")
    s = sections_of(run_dir)
    assert list(s) == ALL

    header = facts(s["header"])
    assert header["status"] == "completed" and header["task"] == "binary" and header["model family"] == "xgboost"
    assert header["gate"] == "passed" and header["registered"].startswith("bc version 1 (aliases now: @")
    assert header["cost"].startswith("no price set (cost.rates) (") and "CPU-seconds" in header["cost"]
    assert "MLflow run start to end" in header["duration"]
    assert header["primary metric"].startswith("roc_auc: validation 0.9")

    data = s["data"]
    rows = table(data, "Rows per split").rows
    assert sum(int(r[1].replace(",", "")) for r in rows) == 569 == int(facts(data)["rows"])
    assert table(data, "Label balance").columns == ["split", "benign", "malignant"]
    assert len(table(data, "Per-column statistics").rows) == 31
    assert "drift against the champion: skipped: no champion of 'bc' yet: nothing to compare with" in data.notes

    training = s["training"]
    assert facts(training)["monitored"] == "validation_log_loss"
    loss = training.figures[0].spec["data"]
    assert [t["name"] for t in loss] == ["train_log_loss", "validation_log_loss (monitored)"]
    history = json.loads((run_dir / "train" / "history.json").read_text())
    assert loss[1]["y"][-1] == pytest.approx(history["validation_log_loss"][-1], rel=1e-4)

    assert figure_titles(s["evaluation"]) == ["ROC curve", "Precision-recall curve",
                                              "Confusion matrix (test, threshold 0.5)", "Calibration (test)",
                                              "Score distribution per class (test)"]
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert table(s["evaluation"], "Metrics").rows[0] == ["accuracy", metrics["validation"]["accuracy"],
                                                         metrics["test"]["accuracy"]]
    assert [r[0] for r in s["slices"].tables[0].rows] == [r["slice"] for r in
                                                          json.loads((run_dir / "gate" / "decision.json").read_text())["slices"]]
    assert "total gain" in facts(s["importance"])["method"]
    assert len(s["importance"].figures[0].spec["data"][0]["y"]) == 25
    assert s["tuning"].missing == "tuning did not run (tuning.enabled is false)"
    usage = facts(s["monitoring"])  # run.json's usage so far, written after every stage
    assert usage["wall time"] != "—" and usage["CPU time"] != "—" and usage["GPU time"] == "none used"

    lineage = facts(s["lineage"])
    assert lineage["trainpipe"] == "0.1.0" and lineage["MLflow run"] != "none"
    assert table(s["lineage"], "Library versions").rows  # logged as MLflow tags when the run started
    assert [r[0] for r in table(s["lineage"], "Stage lineage").rows][:3] == ["ingest", "validate", "split"]
    assert "model:\n  type: xgboost" in s["lineage"].code


def test_without_mlflow_the_report_uses_the_folder_and_says_what_it_could_not_read(report_runs):
    s = sections_of(report_runs.get("binary"), tracked=False)
    assert "run created to last finished stage" in facts(s["header"])["duration"]
    assert "(aliases at registration: @challenger, @champion)" in facts(s["header"])["registered"]
    assert facts(s["lineage"])["git commit"] == "not known (off)"


def test_a_failed_gate_report_shows_the_reasons_and_what_was_not_registered(report_runs):
    s = sections_of(report_runs.get("gate_failed"))
    header = facts(s["header"])
    assert header["status"] == "failed" and header["gate"].startswith("failed")
    assert "test_log_loss" in header["error"] and header["registered"] == "not registered (the run stopped at stage gate, before register)"
    checks = table(s["header"], "Gate checks").rows
    assert ["✗", "test_log_loss", "gates.max.test_log_loss"] in [row[:3] for row in checks]
    assert any(n.startswith("champion v1: roc_auc") for n in s["header"].notes)
    assert s["evaluation"].figures and s["slices"].tables  # evaluate ran; the gate's evidence has the slices
    drift = table(s["data"], "Drift against the champion v1 (ok")  # same data as the champion's: nothing moved
    assert len(drift.rows) == 31 and {row[3] for row in drift.rows} == {"ok"}
    assert "Drift: PSI per column (largest first)" in figure_titles(s["data"])


def test_the_report_stage_runs_after_a_failed_gate_and_the_run_still_fails(report_runs):
    from mlflow.tracking import MlflowClient

    run_dir = report_runs.get("gate_failed")
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "failed" and "gates.max.test_log_loss" in meta["error"]
    assert meta["stages"]["gate"]["status"] == "failed" and meta["stages"]["report"]["status"] == "completed"
    page = (run_dir / "report" / "report.html").read_text()
    assert "gates.max.test_log_loss" in page and "status failed" in page  # the blocked model's report says why
    client = MlflowClient(meta["tracking_uri"])
    assert [a.path for a in client.list_artifacts(meta["mlflow_run_id"], "report")] == ["report/report.html"]
    logged = client.get_run(meta["mlflow_run_id"])
    assert logged.info.status == "FAILED"
    assert {"duration_s", "cpu_s", "gpu_s", "cost_usd"} <= set(logged.data.metrics)  # cost on every run
    assert logged.data.metrics["duration_s"] == pytest.approx(meta["usage"]["wall_s"], abs=1e-3)


def test_a_run_that_failed_validation_still_reports_and_says_why_each_part_is_missing(report_runs):
    s = sections_of(report_runs.get("validate_failed"))
    assert facts(s["header"])["status"] == "failed"
    assert table(s["data"], "Validation findings").rows[0][:3] == ["error", "", "min_rows"]
    for key in ("training", "evaluation", "slices"):
        assert s[key].missing.startswith("the run stopped at stage validate, before")
    assert s["importance"].notes == ["the run stopped at stage validate, before train"]


def test_multiclass_torch_run_has_epoch_curves_and_permutation_importance(report_runs):
    s = sections_of(report_runs.get("multiclass"), tracked=False, limits=Limits(importance_rows=20))
    titles = figure_titles(s["training"])
    assert titles == ["Loss per epoch", "Metrics per epoch", "Learning rate per epoch", "Gradient norm per epoch"]
    assert facts(s["training"])["monitored"] == "validation_loss"
    assert "throughput per epoch: not recorded" in s["training"].notes
    assert figure_titles(s["evaluation"]) == ["Confusion matrix (test)", "ROC curves, one class against the rest (test)",
                                              "Precision-recall curves, one class against the rest (test)",
                                              "Calibration of the top class (test)",
                                              "Probability given to the true class, per class (test)"]
    roc = s["evaluation"].figures[1].spec["data"]
    assert {t["name"] for t in roc} == {"barolo", "grignolino", "barbera", "chance"}
    method = facts(s["importance"])["method"]
    assert method.startswith("permutation importance: drop in validation f1_macro") and "(20 rows, 3 repeats)" in method
    bars = s["importance"].figures[0].spec["data"][0]
    assert len(bars["y"]) == 13 and "error_x" in bars


def test_regression_run_has_residual_and_predicted_against_actual_plots(report_runs):
    run_dir = report_runs.get("regression")
    s = sections_of(run_dir, tracked=False, limits=Limits(scatter_points=50))
    assert figure_titles(s["evaluation"]) == ["Predicted against actual (test)", "Residuals against predicted (test)",
                                              "Residual distribution (test)"]
    scatter = s["evaluation"].figures[0]
    assert len(scatter.spec["data"][0]["x"]) == 50 and scatter.caption.startswith("a seeded sample of 50 of")
    residuals = s["evaluation"].figures[2].spec["data"][0]
    assert sum(residuals["y"]) == len(np.load(run_dir / "features" / "y_test.npy"))
    assert table(s["data"], "Target target").columns[0] == "min"
    assert "lightgbm" in facts(s["importance"])["method"]


def test_ranking_run_plots_recall_and_ndcg_against_k_for_the_model_and_each_baseline(report_runs):
    s = sections_of(report_runs.get("ranking"), tracked=False)
    recall = s["evaluation"].figures[0]
    assert recall.title == "Recall@K against K (test)"
    assert [t["name"] for t in recall.spec["data"]] == ["model", "popularity", "random"]
    assert recall.spec["data"][0]["x"] == [5.0, 10.0, 20.0]
    metrics = json.loads((report_runs.get("ranking") / "evaluate" / "metrics.json").read_text())
    assert recall.spec["data"][1]["y"][1] == pytest.approx(metrics["baselines"]["popularity"]["test"]["recall_at_10"],
                                                           rel=1e-4)
    assert "lift over popularity" in table(s["evaluation"], "Test metrics").columns
    assert facts(s["data"])["users"] == "150" and s["importance"].notes[0].startswith("not applicable")
    assert facts(s["training"])["monitored"] == "validation_recall_at_5"


def test_tuned_run_shows_the_optimization_history_and_optunas_importances(report_runs):
    s = sections_of(report_runs.get("tuned"), tracked=False)
    tuning = s["tuning"]
    assert facts(tuning)["objective"] == "maximize roc_auc" and table(tuning, "Best parameters").rows
    history = tuning.figures[0]
    assert history.title == "Optimization history" and history.spec["data"][-1]["name"] == "best so far"
    best = history.spec["data"][-1]["y"]
    assert best == sorted(best)  # best so far never gets worse when maximizing
    assert tuning.figures[1].image.startswith("data:image/png;base64,") or tuning.notes
    assert "tuned parameters" in facts(s["training"])


def test_write_report_puts_one_file_in_the_run_folder_and_summarizes_it(report_runs):
    run_dir = report_runs.get("binary")
    doc = write_report(run_dir, strict=True)
    path = run_dir / "report.html"
    assert doc["path"] == str(path) and path.stat().st_size == doc["bytes"] < 2_300_000
    assert doc["figures"] == 8 and doc["problems"] == [] and doc["environment"] == "logged to MLflow when the run started"
    assert doc["sections"]["tuning"]["missing"] and not doc["sections"]["evaluation"]["missing"]
    html = path.read_text()
    assert all(f'id="{key}"' in html for key in ALL)
    assert not list(run_dir.glob(".report.html.*"))


def test_the_report_stage_can_describe_the_environment_of_its_own_process_without_mlflow(report_runs, tmp_path):
    from trainpipe import __version__
    from trainpipe.reports.tracked import this_process

    doc = write_report(report_runs.get("binary"), tmp_path / "r.html", tracked=this_process(), strict=True)
    lineage = doc["sections"]["lineage"]
    assert doc["environment"] == "of the run's own process" and lineage["facts"]["python"].count(".") == 2
    assert "Library versions (of the run's own process)" in lineage["tables"]
    assert f"<td>trainpipe</td><td>{__version__}</td>" in (tmp_path / "r.html").read_text()
