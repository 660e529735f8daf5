"""Drift against the champion, end to end: the champion's reference is saved with its version, a later run whose
data has one real column shifted fails the gate under `drift.mode: gate` (exit 3) naming that column, and the
run's report and events say so."""

from __future__ import annotations

import json
from pathlib import Path

from trainpipe.config import config_from_dict
from trainpipe.pipeline.driver import run_pipeline
from trainpipe.store import Store
from trainpipe.tools.datasets import breast_cancer


def test_one_shifted_column_fails_the_drift_gate_with_the_column_named(bc_config, write_config, tmp_path, cli_json):
    config = config_from_dict(bc_config)
    champion = run_pipeline(config, Store.locate(config.store))  # v1, @champion, with its training data's summary
    package = Path(champion["run_dir"]) / "register" / "model"
    reference = json.loads((package / "drift_reference.json").read_text())
    assert reference["label"] == "diagnosis" and reference["rows"] == 397  # the train split it was fitted on

    shifted = breast_cancer()
    shifted["mean_texture"] += shifted["mean_texture"].std()  # one real column moves by one standard deviation
    shifted.to_parquet(tmp_path / "shifted.parquet", index=False)
    doc = {**bc_config, "data": {**bc_config["data"], "path": str(tmp_path / "shifted.parquet")},
           "drift": {"mode": "gate"}}
    code, out = cli_json("run", str(write_config(doc)))

    assert code == 3, out
    assert out["key"] == "drift.psi_fail" and "mean_texture" in out["error"] and "nothing was registered" in out["error"]
    (check,) = [c for c in out["decision"]["checks"] if c["check"] == "drift"]
    assert not check["passed"] and check["reason"].startswith("drift: 1 failed: mean_texture (PSI")

    run_dir = next(p for p in (Path(bc_config["store"]) / "runs").iterdir() if p.name != champion["run_id"])
    drift = json.loads((run_dir / "drift" / "drift.json").read_text())
    assert drift["flagged"] == ["mean_texture"] and drift["champion_version"] == "1"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    drift_events = [e for e in events if e["kind"] == "drift"]  # gate_failed follows: alerts' own event
    assert [(e["severity"], e["details"]["columns"]) for e in drift_events] == [("error", ["mean_texture"])]
    page = (run_dir / "report" / "report.html").read_text()  # the report ran after the failed gate
    assert "Drift against the champion v1 (fail" in page and "drift.psi_fail" in page
