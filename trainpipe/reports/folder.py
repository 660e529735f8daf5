"""Read a run folder for the report: finished stages from `<stage>/`, a failed stage's evidence from
`<stage>.failed/`, and one sentence saying why anything the report wants is absent.

Read-only and tolerant: a report must render for any run, so a missing or unreadable file is `None`,
never an exception.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainpipe.errors import RunError
from trainpipe.monitoring.events import read_events


@dataclass
class RunFolder:
    path: Path
    meta: dict  # run.json
    config: dict  # config.yaml as written by the run (secrets included: redact before showing)
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        import yaml

        path = Path(path)
        try:
            meta = json.loads((path / "run.json").read_text())
        except (OSError, ValueError) as exc:
            raise RunError(f"report: {path} is not a run folder (no readable run.json)", key="run") from exc
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster than the Python parser
        try:
            config = yaml.load((path / "config.yaml").read_text(), Loader=loader) or {}
        except (OSError, yaml.YAMLError):
            config = {}
        return cls(path, meta, config)

    def events(self) -> list[dict[str, Any]]:
        """The run's events, oldest first (a line cut short by a crash is skipped)."""
        return read_events(self.path)

    @property
    def run_id(self) -> str:
        return self.meta.get("run_id", self.path.name)

    @property
    def task(self) -> str | None:
        return self.config.get("task")

    def setting(self, dotted: str, default: Any = None) -> Any:
        """A config value by dotted key (`model.params.monitor`), or default."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def stage_dir(self, stage: str) -> Path | None:
        """The finished stage's folder, else its failed evidence folder, else None."""
        done = self.path / stage
        if (done / "manifest.json").exists():
            return done
        failed = self.path / f"{stage}.failed"
        return failed if failed.is_dir() else None

    def finished(self, stage: str) -> bool:
        return (self.path / stage / "manifest.json").exists()

    def manifest(self, stage: str) -> dict | None:
        return self.json(stage, "manifest.json") if self.finished(stage) else None

    def json(self, stage: str, name: str) -> Any:
        folder = self.stage_dir(stage)
        return _read_json(folder / name) if folder is not None else None

    def array(self, stage: str, name: str) -> np.ndarray | None:
        key = (stage, name)
        if key not in self._cache:
            folder = self.stage_dir(stage)
            try:
                self._cache[key] = np.load(folder / name, allow_pickle=False) if folder is not None else None
            except (OSError, ValueError):
                self._cache[key] = None
        return self._cache[key]

    def file(self, stage: str, name: str) -> Path | None:
        folder = self.stage_dir(stage)
        return folder / name if folder is not None and (folder / name).exists() else None

    def failed_stage(self) -> str | None:
        return next((name for name, state in self.meta.get("stages", {}).items() if state.get("status") == "failed"),
                    None)

    def why_missing(self, stage: str) -> str:
        """One sentence: why this stage's outputs are not in the folder."""
        state = self.meta.get("stages", {}).get(stage, {})
        if state.get("status") == "failed":
            return f"stage {stage} failed: {state.get('error') or 'no error recorded'}"
        if stage == "tune" and not self.setting("tuning.enabled", False):
            return "tuning did not run (tuning.enabled is false)"
        failed = self.failed_stage()
        if failed:
            return f"the run stopped at stage {failed}, before {stage}"
        status = self.meta.get("status")
        if status == "running":
            return f"stage {stage} has not finished yet (the run is still running)"
        if status == "killed":
            return f"the run was stopped before stage {stage} finished"
        return f"stage {stage} left no outputs in {self.path}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
