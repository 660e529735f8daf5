"""`trainpipe report` and `trainpipe runs compare --html` through the real CLI."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_report_command_rewrites_the_report_of_a_finished_and_of_a_failed_run(report_runs, tmp_path, cli, cli_json):
    store = str(report_runs.store)
    code, doc = cli_json("report", report_runs.get("binary").name, "--store", store)
    assert code == 0, doc
    assert doc["path"] == str(report_runs.get("binary") / "report.html") and doc["problems"] == []
    assert doc["figures"] == 8 and doc["sections"]["header"]["facts"]["status"] == "completed"

    out = tmp_path / "failed.html"
    proc = cli("report", report_runs.get("validate_failed").name, "--store", store, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout.replace("\n", "") and "not available: training, evaluation, slices" in proc.stdout
    html = out.read_text()
    assert "schema.min_rows" in html and "plotly-bundle" not in html


@pytest.mark.extended
def test_runs_compare_html_overlays_the_runs(report_runs, tmp_path, cli_json):
    first, second = report_runs.get("binary").name, report_runs.get("regression").name
    page = tmp_path / "compare.html"
    code, doc = cli_json("runs", "compare", first, second, "--store", str(report_runs.store), "--html", str(page))
    assert code == 0, doc
    assert doc["html"]["path"] == str(page) and page.stat().st_size == doc["html"]["bytes"]
    html = page.read_text()
    for section in ("runs", "metrics", "curves", "params"):
        assert f'id="{section}"' in html
    assert f"{first} · validation_log_loss" in html and f"{second} · validation_rmse" in html
    assert "model.type" in html  # a parameter that differs: xgboost vs lightgbm
