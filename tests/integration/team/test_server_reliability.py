"""The reliability suite's concurrency round on the team server: 4 pipelines at once through one MLflow tracking
server on PostgreSQL, 3 rounds (marked `reliability` and `team`: run by `make reliability` where PostgreSQL can
be had)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

from trainpipe.registry.client import Registry
from trainpipe.store import Store
from trainpipe.tracking.config import TrackingConfig

pytestmark = [pytest.mark.team, pytest.mark.reliability, pytest.mark.timeout(1800)]

PROCESSES, ROUNDS = 4, 3


def test_four_pipelines_at_once_on_the_server_three_rounds_no_errors(team, bc_config, tmp_path, figures):
    errors, registered = [], []
    for round_ in range(ROUNDS):
        name = f"bc_rel{round_}"
        config = {**bc_config, "name": name, "store": str(tmp_path / f"store{round_}"),
                  "tracking": {"uri": team.tracking_uri}, "model": {"type": "xgboost", "params": {"n_estimators": 10}}}
        path = tmp_path / f"p{round_}.yaml"
        path.write_text(yaml.safe_dump(config))
        procs = [subprocess.Popen([sys.executable, "-m", "trainpipe", "run", str(path), "--json", "--no-cache"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=team.env)
                 for _ in range(PROCESSES)]
        results = [(p, *p.communicate(timeout=600)) for p in procs]
        errors += [f"round {round_}: exit {p.returncode}: {err[-1500:]}" for p, _, err in results if p.returncode]
        docs = [json.loads(out) for p, out, _ in results if p.returncode == 0]
        assert all(d["metrics"]["test"] and d["metrics"] == docs[0]["metrics"] for d in docs)
        versions = sorted(int(d["registered"]["version"]) for d in docs)
        assert versions == list(range(1, len(docs) + 1)), versions  # unique, gapless
        registry = Registry(Store.locate(str(tmp_path / "client")), TrackingConfig(uri=team.tracking_uri))
        last = {}
        for entry in registry.history(name):
            last[entry["alias"]] = entry["to"]
        assert registry.aliases(name) == {k: v for k, v in last.items() if k in registry.aliases(name)}
        assert set(registry.aliases(name)) <= set(last), "an alias without an audit entry"
        client = MlflowClient(tracking_uri=team.tracking_uri)
        running = client.search_runs([client.get_experiment_by_name(name).experiment_id], "attributes.status = 'RUNNING'")
        assert not running
        registered += versions
    figures["concurrency (team server)"] = {"pipelines": PROCESSES * ROUNDS, "rounds": ROUNDS, "errors": len(errors),
                                            "versions": len(registered)}
    assert not errors, "\n".join(errors)
