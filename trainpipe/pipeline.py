"""Stage order, the run folder, manifests, caching and resume.

Stages talk only through files in `<store>/runs/<run_id>/<stage>/`. A stage writes into a
temporary folder that is renamed into place only after its manifest is written, so a crash never
leaves a half-written stage behind. A stage is reused (in this run on resume, or from any earlier
run through the store's cache index) when its cache key matches a finished manifest whose outputs
are all still on disk.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import operator
import os
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from trainpipe import __version__
from trainpipe.config import PipelineConfig, canonical_hash, config_from_dict, config_hash, dump_config
from trainpipe.errors import Preempted, RunError, TrainpipeError
from trainpipe.run_folder import (file_sizes, input_file_hashes, link_tree, outputs_intact, read_manifest,
                                   replace_dir, user_code_hashes, write_json)
from trainpipe.run_tracking import RunTracking
from trainpipe.store import Store


@dataclass(frozen=True)
class StageSpec:
    name: str
    sections: tuple[str, ...]  # config keys whose values can change this stage's output
    upstream: tuple[str, ...]
    reusable: bool = True  # False: depends on state outside the run folder (the registry), never reused
    enabled_by: str | None = None  # an optional stage runs only when this config key is true

    def active(self, config: PipelineConfig) -> bool:
        return self.enabled_by is None or bool(operator.attrgetter(self.enabled_by)(config))


STAGES: tuple[StageSpec, ...] = (
    StageSpec("ingest", ("data",), ()),
    StageSpec("validate", ("data", "schema", "task", "ranking"), ("ingest",)),
    StageSpec("split", ("split", "seed", "task", "data.target", "ranking"), ("ingest", "validate")),
    StageSpec("features", ("features", "data", "task", "model.type", "ranking"), ("ingest", "split")),
    StageSpec("tune", ("tuning", "model", "training", "seed", "task", "evaluation"), ("features",),
              enabled_by="tuning.enabled"),
    StageSpec("train", ("model", "training", "seed", "task", "ranking"), ("features", "tune")),
    StageSpec("evaluate", ("evaluation", "task", "ranking"), ("features", "train")),
    StageSpec("gate", ("gates", "evaluation", "registry", "task", "ranking"), ("ingest", "split", "features", "evaluate"),
              reusable=False),
    StageSpec("register", ("registry", "evaluation", "task", "ranking"), ("ingest", "split", "features", "train", "evaluate", "gate"),
              reusable=False),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
SPECS = {s.name: s for s in STAGES}


def active_stages(config: PipelineConfig) -> tuple[str, ...]:
    """The stages this config runs, in order (optional ones only when switched on)."""
    return tuple(s.name for s in STAGES if s.active(config))


Event = Callable[[str, dict], None]


@dataclass
class StageContext:
    """What a stage may touch: its own output folder, upstream folders, the config, shared memory."""

    run_id: str
    run_dir: Path
    stage_dir: Path
    config: PipelineConfig
    store: Store
    memo: dict = field(default_factory=dict)  # in-process objects shared between stages (the loaded table)
    cache_key: str = ""  # this stage's: checkpoints written under another key are refused
    resume_anyway: bool = False  # --resume-anyway: load such checkpoints all the same
    tracking: Any = None  # the run's RunTracking: register waits on it for the MLflow run id

    def upstream(self, stage: str) -> Path:
        return self.run_dir / stage

    def checkpoint_dir(self, stage: str) -> Path:
        """Outside the stage's temp folder, which a crash discards: a resumed stage continues from here."""
        return self.run_dir / "checkpoints" / stage

    def manifest(self, stage: str) -> dict:
        return read_manifest(self.run_dir / stage) or {}


def not_a_run(run_id: str, run_dir: Path) -> str:
    return (f"run {run_id!r}: the folder {run_dir} exists but has no run.json, so it is not a trainpipe run (or one "
            "whose creation was interrupted); remove it or use another run id")


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


class Run:
    """One run folder: its config, its run.json, and its MLflow run."""

    def __init__(self, store: Store, run_id: str, config: PipelineConfig, meta: dict):
        self.store, self.run_id, self.config, self.meta = store, run_id, config, meta
        self.dir = store.run_dir(run_id)
        self.tracking = RunTracking(store, config, meta.get("mlflow_run_id"))
        self.created_here = False  # set by create(): only a brand-new run folder may be removed on failure

    # -- creation and loading -------------------------------------------------------------
    @classmethod
    def create(cls, config: PipelineConfig, store: Store, run_id: str | None = None) -> "Run":
        store.ensure()
        run_id = run_id or new_run_id()
        run_dir = store.run_dir(run_id)
        if run_dir.exists():
            if not (run_dir / "run.json").exists():
                raise RunError(not_a_run(run_id, run_dir), key="run")
            raise RunError(f"run {run_id} already exists in {store.runs_dir}; use --resume {run_id}", key="run")
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(dump_config(config))
        meta = {"run_id": run_id, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config_hash": config_hash(config),
                "status": "running", "stages": {}, "mlflow_run_id": None, "trainpipe_version": __version__}
        try:
            run = cls(store, run_id, config, meta)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)  # e.g. an unreachable tracking server
            raise
        run.created_here = True
        run.save_meta()
        run.tracking.start(run_id, run_dir, meta["config_hash"])
        return run

    @classmethod
    def open(cls, store: Store, run_id: str, config: PipelineConfig | None = None) -> "Run":
        run_dir = store.run_dir(run_id)
        meta_path = run_dir / "run.json"
        if not run_dir.is_dir():
            raise RunError(f"run {run_id!r} not found in {store.runs_dir} (if the pipeline sets `store:`, pass --store "
                           "or --config)", key="run")
        if not meta_path.exists():
            raise RunError(not_a_run(run_id, run_dir), key="run")
        reading = meta_path
        try:
            meta = json.loads(meta_path.read_text())
            reading = run_dir / "config.yaml"
            saved = None if config is not None else reading.read_text()
        except (OSError, ValueError) as exc:
            raise RunError(f"run {run_id!r}: cannot read {reading}: {exc}; the run folder is damaged (start a new run)",
                           key="run") from None
        if config is None:
            import yaml

            config = config_from_dict(yaml.safe_load(saved), source=str(run_dir / "config.yaml"), base=run_dir)
        elif config_hash(config) != meta["config_hash"]:
            # A run is one config: its MLflow params and artifacts describe it. A changed config is a new
            # run, which reuses every unaffected stage from this one through the cache.
            raise RunError(f"run {run_id}: the config differs from the one it was started with (hash "
                           f"{config_hash(config)} vs {meta['config_hash']}); start a new run instead — unchanged "
                           "stages are reused", key="config")
        return cls(store, run_id, config, meta)

    def save_meta(self) -> None:
        write_json(self.dir / "run.json", self.meta)

    # -- tracking ----------------------------------------------------------------------------
    def _sync_tracking(self) -> None:
        """Learn early (between stages) that tracking could not start; keep run.json's MLflow id current."""
        try:
            self.tracking.check()
        except BaseException:
            self._drop_if_untracked()
            raise
        if self.tracking.mlflow_run_id and not self.meta.get("mlflow_run_id"):
            self.meta.update(mlflow_run_id=self.tracking.mlflow_run_id, tracking_uri=self.tracking.uri)

    def _drop_if_untracked(self) -> None:
        """A run this process just created whose MLflow run never started leaves no folder behind. A run
        that existed before (resume, a later stage) is kept whatever happens: it may hold checkpoints."""
        if self.tracking.failed_to_start and self.created_here:
            shutil.rmtree(self.dir, ignore_errors=True)

    def finish(self, status: str, error: TrainpipeError | BaseException | None = None) -> None:
        self.meta["status"] = status
        if error is not None:
            self.meta["error"] = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
        try:
            self.tracking.finish(status, self.meta.get("error"))
        except BaseException:
            self._drop_if_untracked()
            if error is None:
                raise
            return  # the stage's error is the one to report
        finally:
            if self.dir.exists():
                self._sync_tracking_ids()
                self.save_meta()

    def _sync_tracking_ids(self) -> None:
        if self.tracking.mlflow_run_id:
            self.meta.update(mlflow_run_id=self.tracking.mlflow_run_id, tracking_uri=self.tracking.uri)

    # -- stages ------------------------------------------------------------------------------
    def cache_key(self, spec: StageSpec) -> str:
        upstream = {}
        for name in spec.upstream:
            if not SPECS[name].active(self.config):
                continue  # an optional stage that is off (tune without tuning) is no input
            manifest = read_manifest(self.dir / name)
            if not manifest or manifest.get("status") not in ("completed", "reused"):
                raise RunError(f"stage {spec.name} needs stage {name}, which has not completed in run {self.run_id}",
                               key="stage")
            upstream[name] = manifest["identity"]
        doc = {"stage": spec.name, "version": __version__, "upstream": upstream,
               "sections": {s: self.config.section(s) for s in spec.sections},
               "user_code": user_code_hashes(self.config, spec.name), "files": input_file_hashes(self.config, spec.name)}
        if spec.name == "ingest":
            from trainpipe.data.io import expand_paths, file_stats

            stats = file_stats(expand_paths(self.config.data.path))
            if any("size" not in s for s in stats):
                doc["nonce"] = secrets.token_hex(8)  # remote files: no cheap change detection, always re-ingest
            doc["data_files"] = stats
        if not spec.reusable:
            doc["nonce"] = secrets.token_hex(8)
        return canonical_hash(doc)

    def _cache_index(self, name: str, key: str) -> Path:
        return self.store.cache_dir / "index" / name / f"{key}.json"

    def _find_reusable(self, name: str, key: str, use_cache: bool) -> tuple[Path, str] | None:
        own = self.dir / name
        manifest = read_manifest(own)
        if manifest and manifest.get("cache_key") == key and outputs_intact(own, manifest):
            return own, self.run_id
        if not use_cache:
            return None
        try:
            entry = json.loads(self._cache_index(name, key).read_text())
        except (OSError, ValueError):
            return None
        other = Path(entry["stage_dir"])
        manifest = read_manifest(other)
        if manifest and manifest.get("cache_key") == key and outputs_intact(other, manifest):
            return other, entry["run_id"]
        return None

    def run_stage(self, name: str, memo: dict | None = None, use_cache: bool = True, on_event: Event | None = None,
                  resume_anyway: bool = False) -> dict:
        spec = SPECS[name]
        memo = {} if memo is None else memo
        key = self.cache_key(spec)
        final = self.dir / name
        emit = on_event or (lambda kind, payload: None)
        found = self._find_reusable(name, key, use_cache)
        reuse_started = time.perf_counter()
        if found is not None:
            source_dir, source_run = found
            if source_dir != final:
                link_tree(source_dir, self.dir / f".{name}.tmp")
                manifest = read_manifest(self.dir / f".{name}.tmp")
                manifest.update(status="reused", reused_from=source_run, run_id=self.run_id,
                                computed_seconds=manifest.get("computed_seconds", manifest.get("seconds")),
                                seconds=round(time.perf_counter() - reuse_started, 3))
                write_json(self.dir / f".{name}.tmp" / "manifest.json", manifest)
                replace_dir(self.dir / f".{name}.tmp", final)
            else:
                manifest = read_manifest(final)
                if manifest["status"] != "reused":
                    manifest = {**manifest, "status": "reused", "reused_from": self.run_id, "seconds": 0.0,
                                "computed_seconds": manifest.get("seconds")}
            self._record(name, manifest, final)
            emit("stage_done", manifest)
            return manifest

        emit("stage_start", {"stage": name})
        tmp = self.dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ctx = StageContext(self.run_id, self.dir, tmp, self.config, self.store, memo, key, resume_anyway,
                           tracking=self.tracking)
        started = time.perf_counter()
        try:
            result = importlib.import_module(f"trainpipe.stages.{name}").run(ctx) or {}
        except BaseException as exc:
            failed = self.dir / f"{name}.failed"
            shutil.rmtree(failed, ignore_errors=True)
            if any(tmp.iterdir()):
                os.replace(tmp, failed)  # evidence (e.g. the validation report), never an output
            shutil.rmtree(tmp, ignore_errors=True)
            self.meta["stages"][name] = {"status": "failed", "error": getattr(exc, "message", str(exc)) or type(exc).__name__}
            self.save_meta()
            if failed.exists():
                self.tracking.evidence(name, sorted(failed.iterdir()))
            raise
        manifest = {
            "stage": name, "status": "completed", "run_id": self.run_id, "cache_key": key,
            "identity": result.get("identity", key), "config_hash": self.meta["config_hash"],
            "code_version": __version__, "host": socket.gethostname(),
            "inputs": {u: (read_manifest(self.dir / u) or {}).get("identity") for u in spec.upstream},
            "seconds": round(time.perf_counter() - started, 3), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outputs": result.get("outputs", {}), "metrics": result.get("metrics", {}),
            "history": result.get("history"), "artifacts": result.get("artifacts", []),
            "summary": result.get("summary", {}), "files": file_sizes(tmp),
        }
        write_json(tmp / "manifest.json", manifest)
        replace_dir(tmp, final)
        shutil.rmtree(self.dir / f"{name}.failed", ignore_errors=True)
        index = self._cache_index(name, key)
        index.parent.mkdir(parents=True, exist_ok=True)
        write_json(index, {"run_id": self.run_id, "stage_dir": str(final)})
        self._record(name, manifest, final)
        emit("stage_done", manifest)
        return manifest

    def _record(self, name: str, manifest: dict, stage_dir: Path) -> None:
        self._sync_tracking()
        entry = {"status": manifest["status"], "seconds": manifest.get("seconds")}
        if manifest.get("reused_from"):
            entry["reused_from"] = manifest["reused_from"]
        self.meta["stages"][name] = entry
        self.save_meta()
        self.tracking.stage(name, stage_dir, manifest)

    def summary(self) -> dict:
        self._sync_tracking_ids()
        stages = []
        for name in active_stages(self.config):
            manifest = read_manifest(self.dir / name)
            state = self.meta["stages"].get(name, {})
            stages.append({"name": name, "status": state.get("status", "pending"), "seconds": state.get("seconds"),
                           "reused_from": state.get("reused_from"), "error": state.get("error"),
                           "summary": (manifest or {}).get("summary", {}) if state.get("status") != "failed" else {}})
        metrics_file = self.dir / "evaluate" / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        artifacts = {}
        for label, rel in (("model", "train/model"), ("preprocessor", "features/preprocessor.joblib"),
                           ("metrics", "evaluate/metrics.json"), ("split", "split/split.json"),
                           ("validation_report", "validate/report.json"), ("statistics", "ingest/stats.json"),
                           ("config", "config.yaml")):
            if (self.dir / rel).exists():
                artifacts[label] = str(self.dir / rel)
        decisions = {}  # the gate's decision (also when it failed) and the registration, for the CLI
        for label, rels in (("gate", ("gate/decision.json", "gate.failed/decision.json")),
                            ("registered", ("register/registered.json",))):
            found = next((self.dir / rel for rel in rels if (self.dir / rel).exists()), None)
            if found is not None:
                decisions[label] = json.loads(found.read_text())
        return {**decisions, "run_id": self.run_id, "status": self.meta["status"], "error": self.meta.get("error"),
                "config_hash": self.meta["config_hash"], "store": str(self.store.root), "run_dir": str(self.dir),
                "mlflow_run_id": self.meta.get("mlflow_run_id"), "tracking_uri": self.meta.get("tracking_uri"),
                "stages": stages, "metrics": metrics, "artifacts": artifacts}


def _preempted(run: Run, exc: Preempted, again: str) -> None:
    """SIGTERM after a checkpoint: killed but resumable (MLflow KILLED, run.json says how to continue)."""
    exc.message = exc.lines[0] = f"{exc.message}; continue with `{again}`"
    run.meta["resumable"] = True
    run.finish("killed", exc)


@contextlib.contextmanager
def _ends_on_error(run: Run, again: str):
    """How a run ends when a stage raises: preempted (resumable with `again`), killed (Ctrl-C) or failed."""
    try:
        yield
    except Preempted as exc:
        _preempted(run, exc, again)
        raise
    except KeyboardInterrupt as exc:
        run.finish("killed", exc)
        raise
    except BaseException as exc:
        run.finish("failed", exc)
        raise


def preflight(config: PipelineConfig) -> None:
    """Checks that need no data: the model family and its parameters, before a run folder exists."""
    from trainpipe.models import get_family

    get_family(config.model.type).check_config(dict(config.model.params), config.model.estimator, config.task)
    if config.tuning.enabled:
        from trainpipe.tuning.space import check_space

        check_space(config)  # every searched name is a parameter of the family, at both ends of its range


def run_pipeline(config: PipelineConfig | None, store: Store, *, resume: str | None = None, run_id: str | None = None,
                 use_cache: bool = True, until: str | None = None, on_event: Event | None = None,
                 resume_anyway: bool = False) -> dict:
    """Run every stage in order (or resume a failed run), tracking in MLflow; returns the run summary."""
    if config is not None:
        preflight(config)
    run = Run.open(store, resume, config) if resume else Run.create(config, store, run_id)
    if resume:
        preflight(run.config)
        if run.meta.get("mlflow_run_id"):
            run.tracking.reopen()
        else:  # killed (SIGKILL) before the tracking worker's id was saved
            run.tracking.adopt(run.run_id, run.dir, run.meta["config_hash"])
        run.meta["status"] = "running"
        run.meta.pop("error", None)
        run.meta.pop("resumable", None)
    if on_event:
        on_event("run_start", {"run_id": run.run_id, "run_dir": str(run.dir), "resumed": bool(resume)})
    memo: dict = {}
    names = active_stages(run.config)
    names = names if until is None else names[: names.index(until) + 1]
    with _ends_on_error(run, f"trainpipe run --resume {run.run_id}"):
        for name in names:
            run.run_stage(name, memo, use_cache=use_cache, on_event=on_event, resume_anyway=resume_anyway)
    run.finish("completed")
    return run.summary()


def _missing_run(store: Store, run_id: str, name: str, config: PipelineConfig | None) -> str:
    """Stage NAME of a run that does not exist: every stage must run first, from ingest. Only with a config
    are the stages in between known (an optional stage such as tune may be off), so only then are they listed."""
    start = f"`trainpipe stage {STAGE_NAMES[0]} --run {run_id} --config {'PIPELINE.yaml' if config is None else '...'}`"
    if config is None:
        return (f"stage {name}: run {run_id!r} does not exist in {store.runs_dir}; a run starts with stage "
                f"{STAGE_NAMES[0]}: {start} (if the pipeline sets `store:`, pass --store)")
    before = [s for s in active_stages(config) if STAGE_NAMES.index(s) < STAGE_NAMES.index(name)]
    return (f"stage {name} needs stage {before[-1]}, which has not completed: run {run_id!r} does not exist yet; "
            f"start it with {start}, then run {', '.join(before[1:])}" if len(before) > 1 else
            f"stage {name}: run {run_id!r} does not exist yet; start it with {start}")


def run_one_stage(store: Store, run_id: str, name: str, config: PipelineConfig | None = None,
                  use_cache: bool = True, on_event: Event | None = None, resume_anyway: bool = False) -> dict:
    """One stage of a run in this process: what an orchestrator task calls."""
    if name not in SPECS:
        import difflib

        close = difflib.get_close_matches(name, STAGE_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RunError(f"stage: unknown stage {name!r}{hint}; stages are {', '.join(STAGE_NAMES)}", key="stage")
    if not store.run_dir(run_id).exists():
        if name != STAGE_NAMES[0]:
            raise RunError(_missing_run(store, run_id, name, config), key="stage")
        if config is None:
            raise RunError(f"run {run_id!r} not found in {store.runs_dir}; pass --config to create it", key="run")
        preflight(config)
        run = Run.create(config, store, run_id)
    else:
        run = Run.open(store, run_id, config)
        if not SPECS[name].active(run.config):
            raise RunError(f"stage {name} is off in this run's config: it needs {SPECS[name].enabled_by}: true",
                           key="stage")
        if run.meta["status"] != "running":
            run.tracking.reopen()
        run.meta["status"] = "running"
    with _ends_on_error(run, f"trainpipe stage {name} --run {run.run_id}"):
        run.run_stage(name, use_cache=use_cache, on_event=on_event, resume_anyway=resume_anyway)
    if name == STAGE_NAMES[-1]:
        run.finish("completed")
    else:
        run.tracking.close()  # this process ends here: its MLflow calls must land first
        run._sync_tracking()
        run.save_meta()
    return run.summary()
