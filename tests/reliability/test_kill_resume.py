"""SIGKILL a real `trainpipe run` at a seeded random point inside a stage, then resume it: the metrics must be
identical to an uninterrupted run's, with no half-written stage folder, one registry version per run, aliases
that agree with the audit log and nothing left RUNNING.

Kill points: stage i % 9 for kill i (every stage, tune included, at least twice in 20), at a random fraction
of the time that stage took in the uninterrupted run (the injector kills as the stage's code returns if it is
faster this time). Every victim runs with --no-cache, so each stage is really computed and the kill lands in
it. Odd kills are resumed straight away (`--resume` recognises the dead process); even ones go through
`trainpipe runs gc` first. `make test` runs one kill; `make reliability` twenty.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli_json
from tests.reliability.faults import assert_store_consistent, kill_inside, leftovers, mlflow_runs, run_meta

STAGES = ("ingest", "validate", "split", "features", "tune", "train", "evaluate", "gate", "register")
KILLS = int(os.environ.get("RELIABILITY_KILLS", "20"))  # fewer for a quick look at the whole suite


def pipeline(data_dir: Path, store: Path) -> dict:
    """Every stage, tune included (a grid of two, so an interrupted study ends with the same best trial)."""
    return {"name": "bc", "task": "binary", "store": str(store),
            "data": {"path": str(data_dir / "bc.parquet"), "target": "diagnosis", "positive_class": "malignant"},
            "model": {"type": "xgboost", "params": {"n_estimators": 20, "max_depth": 3}},
            "training": {"early_stopping_rounds": 5, "threads": 1},
            "tuning": {"enabled": True, "n_trials": 2, "plots": False, "heartbeat_interval": 1, "grace_period": 2,
                       "sampler": {"type": "grid"}, "space": {"max_depth": {"type": "int", "low": 2, "high": 3}}}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> dict:
    """One uninterrupted run: its metrics and how long each stage took."""
    folder = tmp_path_factory.mktemp("kills")
    store = folder / "store"
    config = folder / "pipeline.yaml"
    config.write_text(yaml.safe_dump(pipeline(data_dir, store)))
    code, doc = run_cli_json("run", str(config), "--run-id", "reference", "--store", str(store), timeout=300)
    assert code == 0, doc
    seconds = {s["name"]: s["seconds"] or 0.0 for s in doc["stages"]}
    return {"store": store, "config": config, "metrics": doc["metrics"], "seconds": seconds, "folder": folder}


def plan(seed: int, n: int, seconds: dict) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    return [(STAGES[i % len(STAGES)], round(rng.random() * seconds[STAGES[i % len(STAGES)]], 3)) for i in range(n)]


def kill_and_resume(reference: dict, run_id: str, stage: str, after: float, via_gc: bool) -> dict:
    store, config = reference["store"], reference["config"]
    args = ["run", str(config), "--run-id", run_id, "--no-cache", "--store", str(store),
            "--set", f"tuning.study_name=study-{run_id}"]  # a study of its own, so its tune really runs trials
    mark = kill_inside(args, stage, after, reference["folder"] / f"mark-{run_id}")
    run_dir = store / "runs" / run_id
    assert not (run_dir / stage).exists(), f"{stage} folder written although killed inside it"
    assert run_meta(store, run_id)["status"] == "running"  # what SIGKILL leaves: nobody said otherwise
    if via_gc:
        code, gc = run_cli_json("runs", "gc", "--store", str(store))
        assert code == 0 and [r["run_id"] for r in gc["runs"]] == [run_id], gc
        assert run_meta(store, run_id)["status"] == "killed"
    code, doc = run_cli_json("run", "--resume", run_id, "--no-cache", "--store", str(store), timeout=300)
    assert code == 0 and doc["status"] == "completed", (stage, after, doc)
    assert doc["metrics"] == reference["metrics"], f"kill in {stage} after {after}s: metrics differ"
    meta = run_meta(store, run_id)
    assert via_gc or meta["recovered"]["reason"].endswith("that process has ended")
    (mlflow_run,) = mlflow_runs(store, run_id)
    assert mlflow_run.info.status == "FINISHED"
    assert not leftovers(store), leftovers(store)
    return {"run": run_id, "stage": stage, "after_s": after, "killed_at_s": mark["seconds"], "where": mark["where"],
            "via": "runs gc" if via_gc else "resume", "recovered": True}


@pytest.mark.timeout(900)
def test_one_kill_inside_a_seeded_stage_resumes_to_identical_metrics(reference, seed, figures):
    (stage, after), = random.Random(seed).sample(plan(seed, KILLS, reference["seconds"]), 1)
    record = kill_and_resume(reference, "quick", stage, after, via_gc=True)
    assert_store_consistent(reference["store"])
    figures["kills (make test)"] = {"injected": 1, "recovered": 1, "kills": [record]}


@pytest.mark.reliability
@pytest.mark.timeout(3600)
def test_twenty_kills_across_every_stage_each_resume_to_identical_metrics(reference, seed, figures):
    records = []
    began = time.monotonic()
    for i, (stage, after) in enumerate(plan(seed, KILLS, reference["seconds"])):
        records.append(kill_and_resume(reference, f"kill{i:02d}", stage, after, via_gc=i % 2 == 0))
    counts = assert_store_consistent(reference["store"])
    assert counts["versions"] >= KILLS + 1  # the reference and every victim registered exactly once
    figures["kills"] = {"injected": len(records), "recovered": sum(r["recovered"] for r in records),
                        "stages": len({r["stage"] for r in records}),
                        "seconds": round(time.monotonic() - began), "kills": records}
    print(json.dumps(records, indent=1))
