"""The run folder's file work: manifests, atomic JSON, cache-key inputs, hard-linked reuse.

Plain functions with no knowledge of stage order or MLflow; pipeline.py decides when to call them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig


def read_manifest(stage_dir: Path) -> dict | None:
    try:
        return json.loads((stage_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, doc: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, path)


def outputs_intact(stage_dir: Path, manifest: dict) -> bool:
    for rel, size in manifest.get("files", {}).items():
        path = stage_dir / rel
        if not path.exists() or path.stat().st_size != size:
            return False
    return True


def file_sizes(stage_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(stage_dir)): p.stat().st_size for p in sorted(stage_dir.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def input_file_hashes(config: PipelineConfig, stage: str) -> dict[str, str]:
    """Contents of files the config points at (the schema file), so editing them invalidates the cache."""
    if stage == "validate" and config.schema_.path and Path(config.schema_.path).exists():
        return {config.schema_.path: hashlib.sha256(Path(config.schema_.path).read_bytes()).hexdigest()}
    if stage == "features" and config.ranking is not None:  # ranking's user/item feature tables
        tables = [t.path for t in (config.ranking.user_features, config.ranking.item_features) if t is not None]
        return {path: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in tables if Path(path).is_file()}
    return {}


def user_code_hashes(config: PipelineConfig, stage: str) -> dict[str, str]:
    """Source hashes of user modules the config imports, so editing them invalidates the cache."""
    if stage == "train" and config.model.type == "sklearn" and config.model.estimator:
        from trainpipe.models.sklearn import user_source_hash

        digest = user_source_hash(config.model.estimator)
        return {config.model.estimator: digest} if digest else {}
    return {}


def link_tree(source: Path, target: Path) -> None:
    """Hard-link a finished stage folder (copy where links are impossible): cached reuse costs no disk."""
    shutil.rmtree(target, ignore_errors=True)

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)


def replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
