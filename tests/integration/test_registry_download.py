"""A package from a remote artifact store (a tracking server) is downloaded once per registered checksum into
the store's cache, re-fetched when the cached copy no longer matches, and never left in a temporary folder."""

from __future__ import annotations

import pytest

from trainpipe.errors import RegistryError
from trainpipe.registry.packaging import tree_sha256
from trainpipe.registry.client import check_sha, download_package


def test_download_is_cached_by_checksum_and_refetched_when_the_copy_changed(tmp_path):
    package = tmp_path / "served" / "model"
    package.mkdir(parents=True)
    (package / "MLmodel").write_text("flavors: {}\n")
    (package / "weights.bin").write_bytes(b"w" * 1000)
    sha = tree_sha256(package)
    cache = tmp_path / "store" / "cache" / "registry"

    first = download_package(package.as_uri(), sha, cache, "sqlite:///unused.db")
    assert first == cache / sha and tree_sha256(first) == sha
    (first / "weights.bin").write_bytes(b"tampered")  # the cached copy no longer matches
    again = download_package(package.as_uri(), sha, cache, "sqlite:///unused.db")
    check_sha(again, sha, "model m/1")  # fetched anew
    assert sorted(p.name for p in cache.iterdir()) == [sha]  # no staging folder left behind


def test_a_version_without_a_checksum_is_not_downloaded(tmp_path):
    with pytest.raises(RegistryError, match="no valid trainpipe.sha256 recorded"):
        download_package((tmp_path / "x").as_uri(), None, tmp_path / "cache", "sqlite:///unused.db")
    assert not (tmp_path / "cache").exists()
