"""The registry against a real MLflow SQLite store: aliases, compare-and-set, rollback, audit log, checksums."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainpipe.errors import RegistryError
from trainpipe.registry.packaging import tree_sha256
from trainpipe.registry.client import SHA_TAG, Registry, parse_ref
from trainpipe.store import Store
from trainpipe.tracking.config import TrackingConfig


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(Store(tmp_path / "store").ensure(), TrackingConfig())


def add_version(registry: Registry, tmp_path: Path, name: str = "churn", content: str = "v") -> str:
    package = tmp_path / f"pkg-{content}"
    package.mkdir()
    (package / "MLmodel").write_text(f"flavors: {{}}\n# {content}\n")
    (package / "weights.bin").write_bytes(content.encode() * 100)
    run_id = registry.tracker.start_run("exp", f"run-{content}", {})
    return registry.create_version(name, package, run_id, {SHA_TAG: tree_sha256(package), "trainpipe.run_id": content},
                                   f"# card {content}")


def test_parse_ref():
    assert parse_ref("models:/churn@champion") == ("churn", "champion", None)
    assert parse_ref("churn/3") == ("churn", None, "3")
    assert parse_ref("churn") == ("churn", None, None)


@pytest.mark.parametrize("ref", ["team/churn", "churn/abc", "models:/a/b/c", "churn:1", "churn@", "@champion", ""])
def test_parse_ref_refuses_what_mlflow_cannot_name_in_one_line(ref):
    """MLflow refuses names with '/' or ':' with an exception of its own (an internal error for the CLI)."""
    with pytest.raises(RegistryError, match="expected NAME, NAME@ALIAS or NAME/VERSION"):
        parse_ref(ref)


def test_versions_are_numbered_and_described_with_their_tags(registry, tmp_path):
    assert [add_version(registry, tmp_path, content=c) for c in "ab"] == ["1", "2"]
    doc = registry.describe("churn/1")
    assert doc["tags"]["trainpipe.run_id"] == "a" and doc["card"] == "# card a"
    assert registry.describe("churn")["version"] == "2"  # no alias or version: the latest
    with pytest.raises(RegistryError, match="no alias @champion"):
        registry.version("churn@champion")
    with pytest.raises(RegistryError, match="no registered model"):
        registry.version("nope@champion")


def test_promotion_is_compare_and_set_and_every_move_is_audited(registry, tmp_path):
    for c in "abc":
        add_version(registry, tmp_path, content=c)
    registry.promote("churn", "1", expected=None, reason="first")
    registry.promote("churn", "2", expected="1", reason="better")
    with pytest.raises(RegistryError, match="now points at version 2, not version 1"):
        registry.promote("churn", "3", expected="1", reason="stale decision")
    assert registry.alias_version("churn", "champion") == "2"  # nothing changed
    history = registry.history("churn")
    assert [(e["from"], e["to"], e["action"], e["reason"]) for e in history] == [
        (None, "1", "promote", "first"), ("1", "2", "promote", "better")]
    assert all(e["actor"] and e["at"] for e in history)


def test_rollback_walks_back_through_earlier_champions(registry, tmp_path):
    for c in "abc":
        add_version(registry, tmp_path, content=c)
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback("churn")
    registry.promote("churn", "1", expected=None, reason="r")
    with pytest.raises(RegistryError, match="no earlier champion"):
        registry.rollback("churn")
    registry.promote("churn", "2", expected="1", reason="r")
    registry.promote("churn", "3", expected="2", reason="r")
    assert registry.rollback("churn")["to"] == "2"
    assert registry.rollback("churn")["to"] == "1"  # not back to 3: rollbacks pop the champion stack
    assert registry.alias_version("churn", "champion") == "1"
    assert [e["action"] for e in registry.history("churn")][-2:] == ["rollback", "rollback"]


def test_a_changed_package_refuses_to_load(registry, tmp_path):
    add_version(registry, tmp_path, content="a")
    path, _ = registry.verified_path("churn/1")
    (path / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="changed since registration"):
        registry.verified_path("churn/1")


def test_two_versions_logged_from_one_mlflow_run_never_share_their_package(registry, tmp_path):
    """The issue: v1 and v2 of one run pointed at the run's one `model` folder; registering v2 rewrote it
    and v1 (the champion) failed its checksum for good."""
    run_id = registry.tracker.start_run("exp", "one-run", {})
    versions = []
    for content in "ab":
        package = tmp_path / f"pkg-{content}"
        package.mkdir()
        (package / "MLmodel").write_text(f"flavors: {{}}\n# {content}\n")
        versions.append(registry.create_version("churn", package, run_id, {SHA_TAG: tree_sha256(package),
                                                                          "trainpipe.run_id": "r1"}, "card"))
    paths = [registry.verified_path(f"churn/{v}")[0] for v in versions]  # both still verify
    assert paths[0] != paths[1] and (paths[0] / "MLmodel").read_text().endswith("# a\n")
    assert [str(mv.version) for mv in registry.run_versions("r1", "churn")] == ["2", "1"]  # newest first
    assert registry.run_versions("r2", "churn") == []


def test_a_move_recorded_after_the_fact_joins_the_audit_log(registry, tmp_path):
    add_version(registry, tmp_path, content="a")
    registry.set_alias("churn", "champion", "1")  # the move, then a kill before its audit entry
    entry = registry.record_move("churn", "champion", None, "1", action="auto-promote", reason="first", run="r1")
    assert registry.history("churn") == [entry] and registry.aliases("churn") == {"champion": "1"}
