"""SIGKILL a real `trainpipe stage register --run R` at seeded random moments, resume, and check the registry.

After every resume the run has exactly one version, its aliases are where its decision put them, each alias
move has exactly one audit entry, and the package verifies. Each run registers under its own model name, so
every registration is a first version: challenger and champion both move (the compare-and-set path). Half the
kill moments are drawn over the whole register process; the other half after the version appears in the
registry, where a kill leaves a version without its aliases or audit entries — the window a uniform draw
mostly misses, because interpreter start-up takes most of a register process's time.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from trainpipe.config import config_from_dict
from trainpipe.registry.packaging import tree_sha256
from trainpipe.pipeline.driver import run_pipeline
from trainpipe.registry.client import SHA_TAG, Registry
from trainpipe.store import Store
from trainpipe.tracking.config import TrackingConfig

pytestmark = pytest.mark.e2e

SEED = 10


def trainpipe(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trainpipe", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "200"}, **kwargs)


def prepare(bc_config: dict, run_id: str) -> str:
    """Run `run_id` up to its gate, registering under a model name of its own; returns that name."""
    name = f"bc-{run_id}"
    config = config_from_dict({**bc_config, "registry": {"name": name}})
    run_pipeline(config, Store.locate(config.store), run_id=run_id, until="gate")
    return name


def wait_for_version(registry: Registry, name: str, proc: subprocess.Popen) -> float:
    """Seconds until `name` has a version (or the process ended)."""
    started = time.monotonic()
    while proc.poll() is None:
        if registry.exists(name) and registry.client.search_model_versions(f"name='{name}'"):
            break
        time.sleep(0.02)
    return time.monotonic() - started


def assert_registered_once(registry: Registry, store: Store, name: str, run_id: str) -> None:
    (mv,) = registry.run_versions(run_id, name)  # exactly one version for the run
    version = str(mv.version)
    assert registry.aliases(name) == {"challenger": version, "champion": version}
    history = registry.history(name)
    assert [(e["alias"], e["from"], e["to"], e["run"]) for e in history] == [
        ("challenger", None, version, run_id), ("champion", None, version, run_id)], history
    path, _ = registry.verified_path(f"{name}/{version}")  # raises if the sha256 does not verify
    record = json.loads((store.run_dir(run_id) / "register" / "registered.json").read_text())
    assert record["version"] == version and record["aliases"] == ["challenger", "champion"]
    assert tree_sha256(store.run_dir(run_id) / "register" / "model") == mv.tags[SHA_TAG] == tree_sha256(path)
    # register itself completed (the run goes on to its report stage when resumed as a whole)
    assert json.loads((store.run_dir(run_id) / "run.json").read_text())["stages"]["register"]["status"] == "completed"


# make test: one kill (after the version exists: the window that matters); make reliability: four, both kinds
@pytest.mark.parametrize("kills", [1, pytest.param(4, marks=pytest.mark.reliability)])
def test_register_killed_at_random_moments_completes_one_version_on_resume(kills, bc_config, store):
    target = Store.locate(str(store))
    registry = Registry(target.ensure(), TrackingConfig())
    store_args = ("--store", str(store))

    name = prepare(bc_config, "k0")  # uninterrupted: how long one register process takes here
    began = time.monotonic()
    proc = trainpipe("stage", "register", "--run", "k0", *store_args)
    _, err = proc.communicate(timeout=240)
    duration = time.monotonic() - began
    assert proc.returncode == 0, err
    assert_registered_once(registry, target, name, "k0")

    rng = random.Random(SEED)
    states = []
    # the single kill of make test is of the second kind (even i): once the version exists
    numbers = [2] if kills == 1 else list(range(1, kills + 1))
    for i in numbers:
        run_id = f"k{i}"
        name = prepare(bc_config, run_id)
        proc = trainpipe("stage", "register", "--run", run_id, *store_args)
        if i % 2:  # anywhere in the process
            time.sleep(rng.uniform(0.05, duration))
        else:  # once the version exists: before, between or after the alias moves
            waited = wait_for_version(registry, name, proc)
            time.sleep(rng.uniform(0, max(0.05, duration - waited) / 2))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        versions = len(registry.run_versions(run_id, name)) if registry.exists(name) else 0
        states.append((run_id, proc.returncode, versions, len(registry.history(name)) if versions else 0))

        again = ("stage", "register", "--run", run_id) if i % 2 else ("run", "--resume", run_id)
        resumed = trainpipe(*again, *store_args, "--json")
        out, err = resumed.communicate(timeout=240)
        assert resumed.returncode == 0, (states[-1], err[-3000:])
        assert json.loads(out)["registered"]["name"] == name
        assert_registered_once(registry, target, name, run_id)

    # resuming once more changes nothing anywhere
    before = {f"bc-k{i}": registry.history(f"bc-k{i}") for i in [0, *numbers]}
    again = trainpipe("stage", "register", "--run", f"k{numbers[-1]}", *store_args)
    assert again.wait(timeout=240) == 0
    assert {n: registry.history(n) for n in before} == before
    print("kill states (run, exit code, versions at kill, audit entries at kill):", states)
