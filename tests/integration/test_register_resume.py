"""register is idempotent per run, on a real MLflow store: every state a kill can leave is completed, once.

A kill lands in one of these windows: before the version exists (a fresh register follows), after the version
exists but before an alias moved, or between an alias move and its audit entry. Random kills rarely hit the
last window (milliseconds wide), so each state is made here exactly — the register stage runs for real, then
the writes a kill would have prevented are removed — and a second register must complete it without a second
version or a second audit entry. tests/e2e/test_register_kill.py kills real processes at random moments.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trainpipe.config import config_from_dict
from trainpipe.errors import RegistryError
from trainpipe.registry.packaging import tree_sha256
from trainpipe.pipeline.driver import run_one_stage, run_pipeline
from trainpipe.registry.predict import resolve
from trainpipe.registry.client import AUDIT_PREFIX, SHA_TAG, Registry
from trainpipe.store import Store
from trainpipe.tracking.config import TrackingConfig


@pytest.fixture
def registered(bc_config, store):
    """Run r1 registered (v1 @challenger @champion): (store, registry)."""
    config = config_from_dict(bc_config)
    target = Store.locate(config.store)
    summary = run_pipeline(config, target, run_id="r1")
    assert summary["registered"]["version"] == "1" and summary["registered"]["promoted"]
    return target, Registry(target, TrackingConfig())


def audit_keys(registry: Registry) -> list[str]:
    return sorted(k for k in registry.client.get_registered_model("bc").tags if k.startswith(AUDIT_PREFIX))


def moves(registry: Registry) -> list[tuple]:
    return [(e["alias"], e["from"], e["to"], e["action"], e["run"]) for e in registry.history("bc")]


def cut_short(store: Store) -> None:
    """A killed register stage leaves no `register/` folder (its temporary folder is discarded)."""
    shutil.rmtree(store.run_dir("r1") / "register")


def test_register_again_reports_the_same_version_and_changes_nothing(registered):
    store, registry = registered
    registry.client.delete_registered_model_alias("bc", "challenger")  # moved by hand since: stays so
    before = (moves(registry), registry.aliases("bc"), audit_keys(registry))
    summary = run_one_stage(store, "r1", "register")
    assert summary["registered"]["version"] == "1" and summary["registered"]["already_registered"]
    assert "already registered bc v1" in summary["registered"]["note"]
    assert (moves(registry), registry.aliases("bc"), audit_keys(registry)) == before
    assert [str(v.version) for v in registry.client.search_model_versions("name='bc'")] == ["1"]
    run_folder_package = store.run_dir("r1") / "register" / "model"  # the registered package, copied back
    assert tree_sha256(run_folder_package) == registry.version("bc/1").tags[SHA_TAG]


def test_a_version_left_without_aliases_by_a_kill_gets_them_on_resume(registered):
    store, registry = registered
    for alias in ("challenger", "champion"):
        registry.client.delete_registered_model_alias("bc", alias)
    for key in audit_keys(registry):
        registry.client.delete_registered_model_tag("bc", key)
    cut_short(store)
    run_pipeline(None, store, resume="r1")  # the whole run: the gate keeps its decision, register completes
    assert registry.aliases("bc") == {"challenger": "1", "champion": "1"}
    assert moves(registry) == [("challenger", None, "1", "challenger", "r1"), ("champion", None, "1", "auto-promote", "r1")]
    assert [str(v.version) for v in registry.client.search_model_versions("name='bc'")] == ["1"]


def test_an_alias_moved_without_its_audit_entry_is_recorded_once_on_resume(registered):
    store, registry = registered
    champion_entry = [k for k in audit_keys(registry) if '"champion"' in registry.client.get_registered_model("bc").tags[k]]
    registry.client.delete_registered_model_tag("bc", champion_entry[0])  # killed between the move and its entry
    cut_short(store)
    run_one_stage(store, "r1", "register")
    run_one_stage(store, "r1", "register")
    champion_moves = [m for m in moves(registry) if m[0] == "champion"]
    assert champion_moves == [("champion", None, "1", "auto-promote", "r1")]
    assert "recorded on resume" in registry.history("bc")[-1]["reason"]


def test_predict_checks_a_run_package_against_the_registry_not_the_file_next_to_it(registered, monkeypatch):
    """Whoever edits the package can edit registered.json too: the registry's checksum decides."""
    store, _ = registered
    monkeypatch.chdir(store.run_dir("r1") / "register")  # the folder form, as `trainpipe predict model ...`
    package = store.run_dir("r1") / "register" / "model"
    assert resolve("r1", store)[0] == package
    with open(package / "MLmodel", "a") as handle:
        handle.write("\n# edited\n")
    record_file = package.parent / "registered.json"
    record_file.write_text(json.dumps({**json.loads(record_file.read_text()), "sha256": tree_sha256(package)}))
    for ref in ("r1", "model"):
        with pytest.raises(RegistryError, match="changed since registration"):
            resolve(ref, store)


def test_a_broken_registered_package_is_reported_when_its_run_registers_again(registered):
    store, registry = registered
    path, _ = registry.verified_path("bc/1")
    (path / "MLmodel").unlink()
    with pytest.raises(RegistryError, match="run r1 registered bc v1, but model bc/1: packaged files not found"):
        run_one_stage(store, "r1", "register")
    assert [str(v.version) for v in registry.client.search_model_versions("name='bc'")] == ["1"]


def test_runs_uri_reaches_the_package_of_the_version_that_run_registered(registered):
    store, registry = registered
    mlflow_run = json.loads((store.run_dir("r1") / "run.json").read_text())["mlflow_run_id"]
    path = registry.verified_run_path(f"runs:/{mlflow_run}/model")
    assert path == Path(registry.verified_path("bc/1")[0])
    with pytest.raises(RegistryError, match="logged as runs:/"):
        registry.verified_run_path(f"runs:/{mlflow_run}/elsewhere")
