"""The champion lock kept in the registry (registry_lock.py) on the embedded SQLite store, with real processes.

The same race runs against PostgreSQL behind a tracking server in tests/integration/team/.
"""

from __future__ import annotations

import time

import pytest

from tests.integration import promotion_race
from trainpipe.errors import RegistryError
from trainpipe.registry.client import Registry
from trainpipe.registry.lock import OWNER_TAG, PREFIX, AliasLock
from trainpipe.store import Store
from trainpipe.tracking.config import TrackingConfig


@pytest.fixture
def sqlite_race(tmp_path):
    store = tmp_path / "store"
    uri = f"sqlite:///{store}/mlflow.db"
    promotion_race.prepare(uri, str(store), "race", 4)
    return uri, str(store)


@pytest.mark.extended
def test_four_processes_promoting_at_once_lose_and_duplicate_no_move(sqlite_race):
    uri, store = sqlite_race
    results = promotion_race.collect(promotion_race.start_workers(uri, store, "race", workers=4, moves=2))
    moves = promotion_race.check(uri, store, "race", results)
    assert len(moves) == sum(len(r["made"]) for r in results) == 4 * 2


def test_a_lock_whose_holder_died_is_taken_over_after_its_lease(sqlite_race):
    uri, store = sqlite_race
    registry = Registry(Store.locate(store, uri), TrackingConfig(uri=uri))
    dead = AliasLock(registry.client, "race", "champion", lease=1.0)
    dead.__enter__()  # acquired and never released: its process "died"
    registry.lock_lease, registry.lock_timeout = 1.0, 10.0
    started = time.monotonic()
    entry = registry.promote("race", "2", expected=None, reason="after a dead holder")
    assert 1.0 <= time.monotonic() - started < 8.0
    assert entry["seq"] == dead.generation + 1 and registry.alias_version("race", "champion") == "2"
    # the dead holder's generation was cleaned up; one lock model stays, hidden from `models list`
    locks = [m.name for m in registry.client.search_registered_models() if m.name.startswith(PREFIX)]
    assert locks == [f"{PREFIX}race.champion.{entry['seq']:012d}"]
    assert [m["name"] for m in registry.models()] == ["race"]


def test_a_held_lock_makes_a_move_wait_then_fail_naming_the_holder(sqlite_race):
    uri, store = sqlite_race
    registry = Registry(Store.locate(store, uri), TrackingConfig(uri=uri))
    with AliasLock(registry.client, "race", "champion") as holder:
        registry.lock_timeout = 0.5
        with pytest.raises(RegistryError, match=r"@champion is being moved by .*:\d+:"):
            registry.promote("race", "1", expected=None, reason="blocked")
        tags = registry.client.get_registered_model(holder._name(holder.generation)).tags
        assert tags[OWNER_TAG] == holder.owner
    assert registry.alias_version("race", "champion") is None  # nothing changed
    registry.lock_timeout = 10.0
    assert registry.promote("race", "1", expected=None, reason="after release")["to"] == "1"


def test_a_holder_past_half_its_lease_changes_nothing(sqlite_race):
    uri, store = sqlite_race
    registry = Registry(Store.locate(store, uri), TrackingConfig(uri=uri))
    registry.lock_lease = 0.001  # the reads before the write take longer than half of it
    with pytest.raises(RegistryError, match=r"moving @champion took .*past half the 0.001s lock lease"):
        registry.promote("race", "1", expected=None, reason="too slow")
    assert registry.alias_version("race", "champion") is None and registry.history("race") == []
