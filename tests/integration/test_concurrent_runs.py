"""Several real `trainpipe run` processes of one config at once on one fresh store.

They compute the same stages at the same moment, so they write the same cache index entries and
may reuse each other's stage folders while those are being written; a lost race on a cache entry
must never be an error, and every run must end with the same metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.reliability.faults import assert_store_consistent
from trainpipe.pipeline.run_folder import changed_outputs
from trainpipe.stages.context import read_manifest

# On two busy cores one round of four takes over a minute, mostly in gate/register waiting on the shared MLflow
# SQLite store: `make test` runs one round, `make reliability` five.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

PROCESSES = 4


@pytest.mark.parametrize("repeats", [1, pytest.param(3, marks=pytest.mark.reliability)])
def test_four_runs_of_one_config_at_once_on_a_fresh_store_all_succeed_alike(repeats, bc_config, tmp_path, figures):
    bc_config["model"]["params"]["n_estimators"] = 10
    failures = []
    for repeat in range(repeats):
        store = tmp_path / f"store-{repeat}"
        path = tmp_path / f"pipeline-{repeat}.yaml"
        path.write_text(yaml.safe_dump({**bc_config, "store": str(store)}))
        # half with --no-cache: they compute every stage and write every index entry at the same moments;
        # the others may reuse stage folders that a concurrent run has just finished
        procs = [subprocess.Popen([sys.executable, "-m", "trainpipe", "run", str(path), "--json"]
                                  + (["--no-cache"] if i % 2 else []),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "COLUMNS": "200"}) for i in range(PROCESSES)]
        results = [p.communicate(timeout=300) for p in procs]
        failures += [f"repeat {repeat}: exit {p.returncode}: {err[-1500:]}" for p, (_, err) in zip(procs, results)
                     if p.returncode != 0]
        if any(p.returncode != 0 for p in procs):
            continue
        docs = [json.loads(out) for out, _ in results]
        assert all(d["status"] == "completed" for d in docs)
        assert all(d["metrics"] == docs[0]["metrics"] for d in docs), "same config, data and seed: same metrics"
        assert all(d["metrics"]["test"] and d["metrics"]["validation"] for d in docs), "every metric present"
        assert sorted(d["registered"]["version"] for d in docs) == [str(v) for v in range(1, PROCESSES + 1)]
        leftovers = sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.name.endswith(".tmp"))
        assert not leftovers, leftovers
        for entry in (store / "cache" / "index").rglob("*.json"):  # every entry points at a complete stage
            stage_dir = json.loads(entry.read_text())["stage_dir"]
            manifest = read_manifest(Path(stage_dir))
            assert manifest is not None and changed_outputs(Path(stage_dir), manifest) == [], entry
        assert_store_consistent(store)  # nothing RUNNING, versions unique per run, aliases agree with the audit log
    label = "concurrency (embedded store)" + ("" if repeats > 1 else ", make test")
    figures[label] = {"pipelines": PROCESSES * repeats, "rounds": repeats, "errors": len(failures)}
    assert not failures, "\n".join(failures)
