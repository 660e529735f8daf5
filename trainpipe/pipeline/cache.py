"""Stage cache keys and reuse: what a key covers, the store's cache index, and the checks before a finished
stage folder (this run's, or any earlier run's through `<store>/cache/index/<stage>/<key>.json`) is reused.

A key covers the stage name, the trainpipe version, the upstream stages' identities, the config sections of
the stage's spec and what else its spec names (files, user code, inputs). Reuse is decided on content: every
output must be present at its recorded size, then hard-linked and checked against the manifest's SHA-256s.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from trainpipe import __version__
from trainpipe.config import PipelineConfig
from trainpipe.errors import RunError
from trainpipe.hashing import canonical_hash
from trainpipe.pipeline.run_folder import (changed_outputs, file_hashes, link_tree, outputs_present, replace_dir,
                                           write_json)
from trainpipe.pipeline.stages import SPECS, StageSpec
from trainpipe.stages.context import read_manifest
from trainpipe.store import Store


@dataclass
class RunCache:
    """One run's view of the stage cache."""

    store: Store
    run_id: str
    run_dir: Path
    config: PipelineConfig

    def key(self, spec: StageSpec) -> str:
        upstream = {}
        for name in spec.upstream:
            if not SPECS[name].active(self.config):
                continue  # an optional stage that is off (tune without tuning) is no input
            manifest = read_manifest(self.run_dir / name)
            if not manifest or manifest.get("status") not in ("completed", "reused"):
                raise RunError(f"stage {spec.name} needs stage {name}, which has not completed in run {self.run_id}",
                               key="stage")
            upstream[name] = manifest["identity"]
        doc = {"stage": spec.name, "version": __version__, "upstream": upstream,
               "sections": {s: self.config.hashed_section(s) for s in spec.sections},  # no credential in a key
               "user_code": spec.code(self.config), "files": file_hashes(spec.files(self.config)),
               **spec.inputs(self.config)}
        if not spec.reusable:
            doc["nonce"] = secrets.token_hex(8)
        return canonical_hash(doc)

    def index(self, name: str, key: str) -> Path:
        return self.store.cache_dir / "index" / name / f"{key}.json"

    def find_reusable(self, name: str, key: str, use_cache: bool) -> tuple[Path, str] | None:
        """A finished stage folder with this key whose outputs are present at their sizes (content is checked
        by _reuse, on the files actually reused)."""
        own = self.run_dir / name
        manifest = read_manifest(own)
        if manifest and manifest.get("cache_key") == key and outputs_present(own, manifest):
            return own, self.run_id
        if not use_cache:
            return None
        try:
            entry = json.loads(self.index(name, key).read_text())
            other = Path(entry["stage_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        manifest = read_manifest(other)
        if manifest and manifest.get("cache_key") == key and outputs_present(other, manifest):
            return other, entry.get("run_id")
        return None

    def reuse(self, name: str, key: str, source_dir: Path, source_run: str) -> tuple[dict | None, str | None]:
        """(the reused stage's manifest, None), or (None, why it must be recomputed instead).

        Another run's folder is hard-linked in first and the links are what get verified; a source that
        changes or disappears meanwhile (a concurrent run replacing it) is a lost race, not an error.
        """
        final, started = self.run_dir / name, time.perf_counter()
        whose = "this run's" if source_dir == final else f"run {source_run}'s"
        if source_dir == final:
            manifest = read_manifest(final) or {}
            changed = changed_outputs(final, manifest)
        else:
            tmp = self.run_dir / f".{name}.tmp"
            try:
                link_tree(source_dir, tmp)
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)
                return None, f"{whose} cached {name} changed while it was being reused"
            manifest = read_manifest(tmp) or {}
            changed = changed_outputs(tmp, manifest) if manifest and manifest.get("cache_key") == key else ["manifest.json"]
            if changed is None or changed:
                shutil.rmtree(tmp, ignore_errors=True)
        if changed is None:
            return None, f"{whose} cached {name} has no content hashes (written by an older trainpipe)"
        if changed:
            shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            return None, f"{whose} cached {name} has files changed since they were written: {shown}"
        if source_dir == final:
            manifest = {k: v for k, v in manifest.items() if k != "recomputed_because"}  # said when it was computed
            if manifest["status"] != "reused":
                manifest = {**manifest, "status": "reused", "reused_from": self.run_id, "seconds": 0.0,
                            "computed_seconds": manifest.get("seconds")}
            return manifest, None
        manifest.update(status="reused", reused_from=source_run, run_id=self.run_id,
                        computed_seconds=manifest.get("computed_seconds", manifest.get("seconds")),
                        seconds=round(time.perf_counter() - started, 3))
        manifest.pop("recomputed_because", None)
        write_json(tmp / "manifest.json", manifest)  # a new file: the source's manifest link is left alone
        replace_dir(tmp, final)
        return manifest, None
