"""Concurrent compare-and-set promotion from several OS processes, for any tracking URI (SQLite or a server).

`prepare` registers versions; each worker (`python -m tests.integration.promotion_race URI STORE NAME SEED N`)
reads the champion and promotes another version expecting it, N times, and prints how many moves it made and
how many were refused because the champion had moved; `check` proves no move was lost or duplicated.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _registry(uri: str, store: str):
    from trainpipe.registry.client import Registry
    from trainpipe.store import Store
    from trainpipe.tracking.config import TrackingConfig

    return Registry(Store.locate(store, uri).ensure(), TrackingConfig(uri=uri))


def prepare(uri: str, store: str, name: str, versions: int) -> list[str]:
    """`versions` registered versions of `name` (their source lies in the run's artifact root; nothing loads them)."""
    registry = _registry(uri, store)
    registry.ensure_model(name)
    run_id = registry.tracker.start_run(f"{name}-race", "race", {})
    root = registry.client.get_run(run_id).info.artifact_uri.rstrip("/")
    return [str(registry.client.create_model_version(name, f"{root}/model-{i}", run_id=run_id).version)
            for i in range(versions)]


def start_workers(uri: str, store: str, name: str, workers: int, moves: int) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return [subprocess.Popen([sys.executable, "-m", "tests.integration.promotion_race", uri, store, name, str(seed),
                              str(moves)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             cwd=REPO) for seed in range(workers)]


def collect(procs: list[subprocess.Popen], timeout: float = 240) -> list[dict]:
    results = [p.communicate(timeout=timeout) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), [err[-2000:] for _, err in results]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in results]


def check(uri: str, store: str, name: str, results: list[dict]) -> list[dict]:
    """Every successful move is in the audit log once, in one chain: each starts where the one before ended."""
    registry = _registry(uri, store)
    moves = sorted((e for e in registry.history(name) if e["alias"] == "champion"), key=lambda e: e["seq"])
    made = sorted(reason for r in results for reason in r["made"])
    assert sorted(e["reason"] for e in moves) == made  # none lost, none duplicated
    assert len({e["seq"] for e in moves}) == len(moves)
    assert moves[0]["from"] is None
    assert all(b["from"] == a["to"] for a, b in zip(moves, moves[1:])), [(e["from"], e["to"]) for e in moves]
    assert moves[-1]["to"] == registry.alias_version(name, "champion")
    return moves


def _work(uri: str, store: str, name: str, seed: int, moves: int) -> dict:
    from trainpipe.errors import RegistryError

    registry = _registry(uri, store)
    versions = [str(v["version"]) for v in registry.versions(name)]
    rng = random.Random(seed)
    made, refused = [], 0
    # Every worker makes exactly `moves` moves, retrying a refused compare-and-set (another worker moved the
    # champion between its read and its move): the total is known, so a lost or duplicated move shows.
    for attempt in range(moves * 50):
        if len(made) == moves:
            break
        current = registry.alias_version(name, "champion")
        target = rng.choice([v for v in versions if v != current])
        reason = f"worker {seed} move {len(made)} attempt {attempt}"
        try:
            registry.promote(name, target, expected=current, reason=reason)
            made.append(reason)
        except RegistryError as exc:
            if "now points at" not in exc.message:
                raise
            refused += 1
    return {"made": made, "refused": refused}


if __name__ == "__main__":
    uri_, store_, name_, seed_, moves_ = sys.argv[1:6]
    print(json.dumps(_work(uri_, store_, name_, int(seed_), int(moves_))))
