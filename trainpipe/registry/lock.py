"""A lock for champion moves that lives in the registry itself, so it holds for every process on every machine
that shares the registry (an embedded SQLite store or a tracking server), unlike a file lock.

MLflow has no conditional update, but creating a registered model whose name exists fails atomically (a
unique key in its database). The lock is a chain of such models, one per acquisition:

    trainpipe-lock.<model>.<alias>.<generation>      tags: owner, and `released` once its holder is done

To acquire, read the newest generation N: when it is released (or there is none), create N + 1; exactly one
contender succeeds, the others see N + 1 held and wait. Nobody deletes or edits another holder's entry to take
over, so there is no check-then-act window. A holder that dies leaves N + 1 unreleased: a waiter takes over
once it has seen that same generation held for `lease` seconds by its own monotonic clock (clock skew between
machines does not matter). A holder writes only within `lease / 2` of starting to acquire, and abandons the
move otherwise; the guarantee therefore holds as long as each request completes within the other half.
Generations only grow, so a holder's generation also orders its move among all others (the audit log's
`seq`). Older generations are deleted by the next holder; one lock model per alias stays in the registry.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import socket
import time
from typing import Any

from trainpipe.errors import RegistryError

PREFIX = "trainpipe-lock."
OWNER_TAG = "trainpipe.lock.owner"
RELEASED_TAG = "trainpipe.lock.released"
CONTENTION = ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "database is locked", "already exists",
              "IntegrityError", "UNIQUE constraint")


def is_lock_model(name: str) -> bool:
    return name.startswith(PREFIX)


def _contention(exc: Exception) -> bool:
    text = f"{getattr(exc, 'error_code', '')} {exc}"
    return any(marker in text for marker in CONTENTION)


class AliasLock:
    """`with AliasLock(client, "churn", "champion") as lock:` ... `lock.check()` before each write."""

    def __init__(self, client: Any, model: str, alias: str, lease: float = 30.0, timeout: float = 60.0):
        self.client, self.model, self.alias = client, model, alias
        self.lease, self.timeout = lease, timeout
        safe = re.sub(r"[^\w.-]", "_", model)
        self.base = f"{PREFIX}{safe}.{alias}."
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.generation: int | None = None
        self._started = 0.0

    def _name(self, generation: int) -> str:
        return f"{self.base}{generation:012d}"

    def _chain(self) -> dict[int, dict[str, str]]:
        """{generation: tags} of this lock's models (LIKE treats `_` as a wildcard: names are matched here)."""
        found: dict[int, dict[str, str]] = {}
        token = None
        while True:
            page = self.client.search_registered_models(filter_string=f"name LIKE '{self.base}%'",
                                                        max_results=100, page_token=token)
            for model in page:
                rest = model.name[len(self.base):] if model.name.startswith(self.base) else ""
                if rest.isdigit():
                    found[int(rest)] = dict(model.tags)
            token = page.token
            if not token:
                return found

    def __enter__(self) -> "AliasLock":
        deadline = time.monotonic() + self.timeout
        first_seen: dict[int, float] = {}  # generation -> when this process first saw it held
        while True:
            try:
                if self._try_acquire(first_seen):
                    return self
            except Exception as exc:
                if not _contention(exc):
                    raise
            if time.monotonic() > deadline:
                holder = self._holder()
                raise RegistryError(f"model {self.model!r}: @{self.alias} is being moved by {holder} (lock held "
                                    f"longer than {self.timeout:.0f}s); nothing changed, retry", key="model")
            time.sleep(random.uniform(0.02, 0.12))

    def _try_acquire(self, first_seen: dict[int, float]) -> bool:
        chain = self._chain()
        top = max(chain, default=0)
        if top and chain[top].get(RELEASED_TAG) != "true":
            seen = first_seen.setdefault(top, time.monotonic())
            if time.monotonic() - seen < self.lease:
                return False  # held, and not (yet) for a whole lease
        mine = top + 1
        started = time.monotonic()
        try:
            self.client.create_registered_model(self._name(mine), tags={OWNER_TAG: self.owner},
                                                description="trainpipe: lock for moving an alias; do not edit")
        except Exception as exc:
            if _contention(exc):
                return False  # another process created that generation first
            raise
        if max(self._chain(), default=0) != mine:
            # a generation already cleaned up was re-created from an old read: not the newest, so not ours
            self._delete(mine)
            return False
        self.generation, self._started = mine, started
        for old in [g for g in chain if g < mine]:
            self._delete(old)
        return True

    def check(self) -> None:
        """Call before each write: past half the lease another process may take over, so stop here."""
        elapsed = time.monotonic() - self._started
        if elapsed > self.lease / 2:
            raise RegistryError(f"model {self.model!r}: moving @{self.alias} took {elapsed:.1f}s, past half the "
                                f"{self.lease:g}s lock lease; nothing more was changed, retry", key="model")

    def __exit__(self, *exc_info: object) -> None:
        if self.generation is None:
            return
        try:
            self.client.set_registered_model_tag(self._name(self.generation), RELEASED_TAG, "true")
        except Exception:  # already taken over and cleaned up; or unreachable: waiters take over after the lease
            pass
        self.generation = None

    def _delete(self, generation: int) -> None:
        try:
            self.client.delete_registered_model(self._name(generation))
        except Exception:
            pass  # gone already (a concurrent cleanup)

    def _holder(self) -> str:
        try:
            chain = self._chain()
            return chain[max(chain)].get(OWNER_TAG, "unknown") if chain else "nobody"
        except Exception:
            return "unknown"
