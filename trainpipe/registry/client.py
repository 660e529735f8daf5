"""The MLflow Model Registry through MlflowClient: versions, aliases, compare-and-set promotion, audit log.

Compare-and-set: MLflow has no conditional alias update, so a move reads the champion, compares it
with the version the decision was made against and sets the alias while holding a lock kept in the
registry itself (registry_lock.py: a chain of uniquely named registered models), which every process
on every machine sharing the store or the tracking server takes (docs/registry.md states its limits).

Audit log: one registered-model tag per alias move, `trainpipe.audit.<epoch ms>.<random>` holding a
JSON line. It lives in the registry database itself, so it is as durable and as shared as the aliases
it describes (a file in the store would be invisible to a team on a tracking server), and a new key
per event means concurrent writers never overwrite each other's entries.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field

from trainpipe.errors import RegistryError
from trainpipe.registry.lock import is_lock_model

if TYPE_CHECKING:
    from trainpipe.store import Store
    from trainpipe.tracking.config import TrackingConfig

T = TypeVar("T")

AUDIT_PREFIX = "trainpipe.audit."
SHA_TAG = "trainpipe.sha256"


class RegistryConfig(BaseModel):
    """Config section `registry`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Register models that pass their gates (off when tracking is disabled).")
    name: str | None = Field(None, description="Registered model name; default: the pipeline name.")
    promotion: Literal["auto", "manual"] = Field("auto", description="auto: a version that passed the champion "
                                                 "comparison (or the first one) becomes champion; manual: only "
                                                 "`trainpipe models promote` moves it.")
    intended_use: str = Field("", description="Model card: what the model is for and who may use it.")
    limitations: list[str] = Field(default_factory=list, description="Model card: known limitations, one per item.")


def model_name(config: Any) -> str:
    return config.registry.name or config.name


def registry_enabled(config: Any) -> bool:
    return bool(config.tracking.enabled and config.registry.enabled)


def actor() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _retry_alias(fn: Callable[[], T], attempts: int = 8) -> T:
    """Creating a new alias concurrently fails ~0.8% of the time on SQLite's UNIQUE constraint (FACTS.md)."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            text = str(exc)
            if attempt == attempts - 1 or not ("UNIQUE constraint" in text or "IntegrityError" in text
                                               or "database is locked" in text):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable: the last attempt returns or raises")


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """`[models:/]NAME`, `NAME@alias` or `NAME/version` -> (name, alias, version); anything else is one line
    (MLflow would answer a malformed name with an exception of its own)."""
    body = ref.removeprefix("models:/")
    name, alias, version = body, None, None
    if "@" in body:
        name, alias = body.rsplit("@", 1)
    elif match := re.fullmatch(r"(.+)/(\d+)", body):
        name, version = match.group(1), match.group(2)
    if not name or not valid_name(name) or (alias is not None and not alias):
        raise RegistryError(f"model {ref!r}: expected NAME, NAME@ALIAS or NAME/VERSION (VERSION a number, NAME "
                            "without '/' or ':'), optionally after models:/", key="model")
    return name, alias, version


def valid_name(name: str) -> bool:
    """MLflow refuses registered-model names with '/' or ':'."""
    return not ("/" in name or ":" in name)


class Registry:
    lock_lease = 30.0  # seconds; registry_lock.py says what they guarantee
    lock_timeout = 60.0

    def __init__(self, store: Store, tracking_config: TrackingConfig) -> None:
        from trainpipe.tracking.tracker import Tracker

        self.tracker = Tracker(store, tracking_config)
        self.client = self.tracker.client
        self.store = store

    # -- reading ------------------------------------------------------------------------------
    def _model(self, name: str) -> Any:
        if not name or not valid_name(name):
            raise RegistryError(f"model {name!r}: not a registered model name (names cannot be empty or contain '/' "
                                "or ':')", key="model")
        try:
            return self.client.get_registered_model(name)
        except Exception as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc):
                raise RegistryError(f"model {name!r}: no registered model of that name in {self.tracker.uri}",
                                    key="model") from None
            raise

    def alias_version(self, name: str, alias: str) -> str | None:
        found = self._model(name).aliases.get(alias) if self.exists(name) else None
        return None if found is None else str(found)

    def aliases(self, name: str) -> dict[str, str]:
        return {alias: str(version) for alias, version in self._model(name).aliases.items()}

    def exists(self, name: str) -> bool:
        try:
            self.client.get_registered_model(name)
            return True
        except Exception:
            return False

    def version(self, ref: str) -> Any:
        name, alias, version = parse_ref(ref)
        model = self._model(name)
        if alias:
            if alias not in model.aliases:
                known = ", ".join(f"@{a}" for a in sorted(model.aliases)) or "none"
                raise RegistryError(f"model {name!r} has no alias @{alias} (aliases: {known})", key="model")
            version = model.aliases[alias]
        if version is None:
            newest = max((int(v.version) for v in self.client.search_model_versions(f"name='{name}'")), default=None)
            if newest is None:
                raise RegistryError(f"model {name!r} has no versions", key="model")
            version = str(newest)
        try:
            return self.client.get_model_version(name, str(version))
        except Exception:
            raise RegistryError(f"model {name!r} has no version {version}", key="model") from None

    def versions(self, name: str) -> list[dict]:
        model = self._model(name)
        by_version: dict[str, list[str]] = {}
        for alias, version in model.aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        rows = []
        for mv in sorted(self.client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version)):
            rows.append({"version": str(mv.version), "aliases": sorted(by_version.get(str(mv.version), [])),
                         "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mv.creation_timestamp / 1000)),
                         "run_id": mv.tags.get("trainpipe.run_id"), "metric": mv.tags.get("trainpipe.primary_metric"),
                         "test": _float(mv.tags.get("trainpipe.test_metric")), "gate": mv.tags.get("trainpipe.gate")})
        return rows

    def models(self) -> list[dict]:
        return [{"name": m.name, "aliases": {a: str(v) for a, v in m.aliases.items()},
                 "latest": max((int(v.version) for v in (m.latest_versions or [])), default=None)}
                for m in self.client.search_registered_models() if not is_lock_model(m.name)]

    def describe(self, ref: str) -> dict:
        mv = self.version(ref)
        aliases = sorted(a for a, v in self._model(mv.name).aliases.items() if str(v) == str(mv.version))
        return {"name": mv.name, "version": str(mv.version), "aliases": aliases, "source": mv.source,
                "mlflow_run_id": mv.run_id, "created": time.strftime("%Y-%m-%d %H:%M:%S",
                                                                      time.localtime(mv.creation_timestamp / 1000)),
                "tags": dict(sorted(mv.tags.items())), "card": mv.description or ""}

    def history(self, name: str) -> list[dict]:
        tags = self._model(name).tags
        entries = [json.loads(v) for k, v in tags.items() if k.startswith(AUDIT_PREFIX)]
        return sorted(entries, key=lambda e: (e["at_ms"], e["id"]))

    # -- writing ------------------------------------------------------------------------------
    def ensure_model(self, name: str, description: str = "") -> None:
        if self.exists(name):
            return
        try:
            self.client.create_registered_model(name, description=description or None)
        except Exception as exc:
            if not self.exists(name):  # not a concurrent creation by another pipeline
                raise RegistryError(f"registry.name: cannot create registered model {name!r}: "
                                    f"{str(exc).splitlines()[0]}", key="registry.name") from exc

    def create_version(self, name: str, package: Path, mlflow_run_id: str, tags: dict[str, str],
                       description: str) -> str:
        """Upload the packaged folder into the MLflow run and register it: a new, unique version number.

        The folder is logged under `model-<sha256[:16]>`, a path no other version uses: a later upload
        never rewrites files an earlier version points at (two versions of one run used to share `model/`,
        and the second upload broke the first one's checksum)."""
        self.ensure_model(name)
        folder = f"model-{tags[SHA_TAG][:16]}"
        self.client.log_artifacts(mlflow_run_id, str(package), artifact_path=folder)
        source = f"{self.client.get_run(mlflow_run_id).info.artifact_uri.rstrip('/')}/{folder}"
        mv = self.client.create_model_version(name, source, run_id=mlflow_run_id,
                                              tags={k: str(v)[:5000] for k, v in tags.items()},
                                              description=description[:4900] or None)
        return str(mv.version)

    def run_versions(self, run_id: str, name: str | None = None) -> list:
        """Versions registered by trainpipe run `run_id` (tag `trainpipe.run_id`), newest first. One at most
        since register is idempotent; stores written before that may hold several."""
        query = f"tags.`trainpipe.run_id` = '{run_id}'" + (f" and name = '{name}'" if name else "")
        try:
            found = self.client.search_model_versions(query)
        except Exception as exc:
            raise RegistryError(f"run {run_id}: cannot search the registry at {self.tracker.uri}: "
                                f"{str(exc).splitlines()[0]}", key="model") from exc
        return sorted(found, key=lambda mv: -int(mv.version))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        _retry_alias(lambda: self.client.set_registered_model_alias(name, alias, str(version)))

    def _audit(self, name: str, entry: dict) -> dict:
        at_ms = int(time.time() * 1000)
        entry = {"id": secrets.token_hex(4), "at_ms": at_ms,
                 "at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(at_ms / 1000)), **entry}
        key = f"{AUDIT_PREFIX}{at_ms:013d}.{entry['id']}"
        _retry_alias(lambda: self.client.set_registered_model_tag(name, key, json.dumps(entry, sort_keys=True)))
        return entry

    def move_alias(self, name: str, alias: str, to_version: str | None, *, expected: str | None, action: str,
                   reason: str, run: str | None = None) -> dict:
        """Compare-and-set: move `alias` to `to_version` only if it still points at `expected`, under the lock
        kept in the registry itself (registry_lock.py), so it holds across machines sharing a tracking server."""
        from trainpipe.registry.lock import AliasLock

        self._model(name)  # a clear error for an unknown model before any lock is created
        with AliasLock(self.client, name, alias, lease=self.lock_lease, timeout=self.lock_timeout) as lock:
            current = self.alias_version(name, alias)
            if str(current) != str(expected):
                raise RegistryError(
                    f"model {name!r}: @{alias} now points at {_v(current)}, not {_v(expected)} as when this was "
                    f"decided; nothing changed (look at `trainpipe models history {name}` and retry)", key="model")
            if to_version is not None:
                self.version(f"{name}/{to_version}")  # exists?
            lock.check()
            if to_version is None:
                self.client.delete_registered_model_alias(name, alias)
            else:
                self.set_alias(name, alias, to_version)
            return self._audit(name, {"alias": alias, "from": current, "to": to_version, "action": action,
                                      "reason": reason, "actor": actor(), "run": run, "seq": lock.generation})

    def point(self, name: str, alias: str, version: str, *, action: str, reason: str, run: str | None = None) -> dict:
        """Last-writer-wins move (the challenger alias), still recorded in the audit log."""
        current = self.alias_version(name, alias)
        self.set_alias(name, alias, version)
        return self._audit(name, {"alias": alias, "from": current, "to": str(version), "action": action,
                                  "reason": reason, "actor": actor(), "run": run})

    def record_move(self, name: str, alias: str, from_version: str | None, to_version: str, *, action: str,
                    reason: str, run: str | None = None) -> dict:
        """The audit entry of a move that happened without one (a process killed between the two writes)."""
        return self._audit(name, {"alias": alias, "from": from_version, "to": str(to_version), "action": action,
                                  "reason": reason, "actor": actor(), "run": run})

    def promote(self, name: str, version: str, *, expected: str | None, reason: str, action: str = "promote",
                run: str | None = None) -> dict:
        return self.move_alias(name, "champion", str(version), expected=expected, action=action, reason=reason, run=run)

    def previous_champion(self, name: str) -> str | None:
        """Replay the audit log: promotions push, rollbacks pop; the previous champion is below the top."""
        stack: list[str | None] = []
        for entry in _in_lock_order([e for e in self.history(name) if e["alias"] == "champion"]):
            if entry["action"] == "rollback":
                if stack:
                    stack.pop()
                if not stack or stack[-1] != entry["to"]:
                    stack.append(entry["to"])
            else:
                stack.append(entry["to"])
        return stack[-2] if len(stack) >= 2 else None

    def rollback(self, name: str, reason: str = "rollback") -> dict:
        self._model(name)  # an unknown name says so, not "no champion"
        current = self.alias_version(name, "champion")
        if current is None:
            raise RegistryError(f"model {name!r} has no champion to roll back", key="model")
        previous = self.previous_champion(name)
        if previous is None:
            raise RegistryError(f"model {name!r}: no earlier champion in the audit log; promote a version instead",
                                key="model")
        return self.move_alias(name, "champion", previous, expected=current, action="rollback", reason=reason)

    # -- loading ------------------------------------------------------------------------------
    def local_path(self, mv: Any) -> Path:
        """A version's package on this machine: its folder when the source is local, else a download (a
        tracking server's `mlflow-artifacts:/`, object stores) kept in `<store>/cache/registry/<sha256>`, so the
        gate and predict do not fetch, or leave behind, a copy per call; the caller verifies the checksum."""
        source = mv.source
        if source.startswith("file:"):
            return Path(unquote(urlparse(source).path))
        if os.path.isabs(source):
            return Path(source)
        return download_package(source, mv.tags.get(SHA_TAG), self.store.cache_dir / "registry", self.tracker.uri)

    def verified_run_path(self, ref: str) -> Path:
        """`runs:/MLFLOW_RUN_ID/model`: the package that MLflow run registered, checked against its SHA-256."""
        run_id, _, artifact = ref.removeprefix("runs:/").partition("/")
        try:
            mvs = self.client.search_model_versions(f"run_id = '{run_id}'")
        except Exception as exc:
            raise RegistryError(f"model {ref!r}: cannot look up MLflow run {run_id!r}: {str(exc).splitlines()[0]}",
                                key="model") from exc
        if not mvs:
            raise RegistryError(f"model {ref!r}: MLflow run {run_id!r} registered no model version (only registered "
                                "packages carry a SHA-256 to verify)", key="model")
        mv = max(mvs, key=lambda v: int(v.version))
        folder = (mv.source or "").rstrip("/").rsplit("/", 1)[-1]
        if artifact.strip("/") not in ("", "model", folder):
            raise RegistryError(f"model {ref!r}: no package there; MLflow run {run_id} registered "
                                f"{mv.name}/{mv.version}, logged as runs:/{run_id}/{folder}", key="model")
        path, _ = self.verified_path(f"{mv.name}/{mv.version}")
        return path

    def verified_path(self, ref: str) -> tuple[Path, Any]:
        """The packaged folder of a version, after checking its SHA-256 against the registered one."""
        mv = self.version(ref)
        path = self.local_path(mv)
        if not (path / "MLmodel").exists():
            raise RegistryError(f"model {mv.name}/{mv.version}: packaged files not found at {mv.source}", key="model")
        check_sha(path, mv.tags.get(SHA_TAG), f"{mv.name}/{mv.version}")
        return path, mv


def download_package(source: str, sha: str | None, cache: Path, tracking_uri: str) -> Path:
    """Download once per registered checksum; a cached copy that no longer matches it is fetched again."""
    import shutil
    import tempfile

    import mlflow.artifacts

    from trainpipe.registry.packaging import tree_sha256

    if not sha or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise RegistryError(f"model at {source}: no valid {SHA_TAG} recorded; refusing to load an unverifiable model",
                            key="model")
    target = cache / sha
    if (target / "MLmodel").exists():
        if tree_sha256(target) == sha:
            return target
        shutil.rmtree(target, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
    try:
        path = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=tracking_uri,
                                                        dst_path=str(staging)))
        try:
            os.replace(path, target)
        except OSError:  # another process cached the same package first
            pass
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_sha(path: Path, expected: str | None, label: str) -> None:
    from trainpipe.registry.packaging import tree_sha256

    if not expected:
        raise RegistryError(f"model {label}: no {SHA_TAG} recorded; refusing to load an unverifiable model", key="model")
    actual = tree_sha256(path)
    if actual != expected:
        raise RegistryError(f"model {label}: packaged files changed since registration (sha256 {actual[:12]}… ≠ "
                            f"registered {expected[:12]}…); refusing to load", key="model")


def _in_lock_order(entries: list[dict]) -> list[dict]:
    """Time order, except that moves made under the registry lock (`seq`: its generation, registry_lock.py) fill
    their places in seq order: their true order whatever the clocks of the machines that wrote them."""
    slots = [i for i, e in enumerate(entries) if e.get("seq") is not None]
    ordered = sorted((entries[i] for i in slots), key=lambda e: e["seq"])
    out = list(entries)
    for i, entry in zip(slots, ordered):
        out[i] = entry
    return out


def _v(version: object) -> str:
    return "no version" if version is None else f"version {version}"


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
