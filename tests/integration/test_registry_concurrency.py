"""Two real pipeline processes registering the same model name at once on the SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml
from mlflow.tracking import MlflowClient

from trainpipe.registry.client import Registry
from trainpipe.store import Store
from trainpipe.tracking.config import TrackingConfig


def test_two_pipelines_register_the_same_name_at_once(bc_config, store, tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(bc_config))
    env = {**os.environ, "COLUMNS": "200"}
    procs = [subprocess.Popen([sys.executable, "-m", "trainpipe", "run", str(path), "--no-cache", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    docs = [json.loads(out) for out, _ in results]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    assert sorted(d["registered"]["version"] for d in docs) == ["1", "2"]  # both registered, distinct versions

    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    aliases = client.get_registered_model("bc").aliases
    assert {str(aliases["champion"]), str(aliases["challenger"])} <= {"1", "2"}
    history = Registry(Store.locate(str(store)), TrackingConfig()).history("bc")
    champion_moves = [e for e in history if e["alias"] == "champion"]
    # consistent: every champion move starts where the previous one ended, and the last one is the alias
    assert champion_moves[0]["from"] is None
    assert all(b["from"] == a["to"] for a, b in zip(champion_moves, champion_moves[1:]))
    assert champion_moves[-1]["to"] == str(aliases["champion"])
    promoted = [d for d in docs if d["registered"]["promoted"]]
    assert len(promoted) == len(champion_moves) >= 1
    assert all("not promoted" in d["registered"]["note"] for d in docs if not d["registered"]["promoted"])
