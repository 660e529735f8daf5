"""Stage order, the run folder, manifests, caching and resume.

Stages talk only through files in `<store>/runs/<run_id>/<stage>/`. A stage writes into a
temporary folder that is renamed into place only after its manifest is written, so a crash never
leaves a half-written stage behind. A stage is reused (in this run on resume, or from any earlier
run through the store's cache index) when its cache key matches a finished manifest whose outputs
are all still on disk with the content hashes the manifest recorded; otherwise it is recomputed and
the stage line says why. One process works on a run at a time (a lock file in the run folder), so
the run's temporary folders and run.json have one writer; runs share only the cache index, whose
entries are replaced atomically.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from trainpipe import __version__
from trainpipe.config import PipelineConfig, config_from_dict, config_hash, dump_config
from trainpipe.errors import Preempted, RunError, TrainpipeError
from trainpipe.monitoring.cost import BudgetChecker, ResourceMeter, Usage, cost_metrics, gpus_in_use
from trainpipe.pipeline.alerting import RunAlerts
from trainpipe.pipeline.cache import RunCache
from trainpipe.pipeline.liveness import RunOwnership, describe, judge
from trainpipe.pipeline.run_folder import (file_digests, file_sizes, lock_run, replace_dir, write_json)
from trainpipe.pipeline.stages import RUNNERS, SPECS, active_stages
from trainpipe.pipeline.tracking import RunTracking
from trainpipe.redaction import redact_url_credentials, redacted_keys, scrub
from trainpipe.stages.array_writes import ArrayWrites
from trainpipe.stages.context import StageContext, read_manifest
from trainpipe.store import Store
from trainpipe.tasks import task_for

if TYPE_CHECKING:
    from filelock import BaseFileLock


Event = Callable[[str, dict], None]


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
        self.task = task_for(config)  # what differs between tasks, chosen once for the run
        self.cache = RunCache(store, run_id, self.dir, config)
        self.alerts = RunAlerts(config, store, run_id, self.dir)  # the `alerts` section: how stages' events go out
        self.created_here = False  # set by create(): only a brand-new run folder may be removed on failure
        self._lock: BaseFileLock | None = None
        # What this process uses for the run (every attempt adds its own: resume, one `trainpipe stage` each)
        self.meter = ResourceMeter()
        self.earlier_usage = Usage(**meta.get("usage", {}))
        # The budget is per attempt: a run stopped by it resumes from its checkpoint with a new allowance.
        checker = BudgetChecker(config.budget, config.cost.effective_rates(), meter=self.meter)
        self.budget = checker if checker.active else None
        self.ownership = RunOwnership(self.dir / "run.json", self.tracking.heartbeat)
        self.writes = ArrayWrites()  # stages' .npy outputs, written while the next stage runs

    # -- creation and loading -------------------------------------------------------------
    @classmethod
    def create(cls, config: PipelineConfig, store: Store, run_id: str | None = None) -> "Run":
        store.ensure()
        run_id = run_id or new_run_id()
        run_dir = store.run_dir(run_id)
        try:
            run_dir.mkdir()  # atomic: of two processes given one --run-id, one gets the run
        except FileExistsError:
            if not (run_dir / "run.json").exists():
                raise RunError(not_a_run(run_id, run_dir), key="run") from None
            raise RunError(f"run {run_id} already exists in {store.runs_dir}; use --resume {run_id}", key="run") from None
        (run_dir / "config.yaml").write_text(dump_config(config))  # secrets redacted, env values as ${oc.env:...}
        meta: dict[str, Any] = {"run_id": run_id, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config_hash": config_hash(config),
                "status": "running", "stages": {}, "mlflow_run_id": None, "trainpipe_version": __version__,
                "config_dir": config.config_dir}  # what relative ${oc.env:...} paths resolve against on resume
        try:
            run = cls(store, run_id, config, meta)
            run._lock = lock_run(run_dir, run_id)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)  # e.g. an unreachable tracking server
            raise
        run.created_here = True
        run.claim()
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
        lock = _lock_or_say_who(run_dir, run_id)
        try:
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                raise RunError(f"run {run_id!r}: cannot read {meta_path}: {exc}; the run folder is damaged (start a "
                               "new run)", key="run") from None
            _refuse_if_alive(run_id, meta)  # a process on another machine sharing the store (no common lock)
            if config is None:
                config = cls._recorded_config(run_dir, meta)
            elif config_hash(config) != meta["config_hash"]:
                # A run is one config: its MLflow params and artifacts describe it. A changed config is a new
                # run, which reuses every unaffected stage from this one through the cache.
                raise RunError(f"run {run_id}: the config differs from the one it was started with (hash "
                               f"{config_hash(config)} vs {meta['config_hash']}); start a new run instead — unchanged "
                               "stages are reused", key="config")
            run = cls(store, run_id, config, meta)
        except BaseException:
            lock.release()
            raise
        run._lock = lock
        run.claim()
        return run

    def claim(self) -> None:
        """Record this process as the run's owner and keep its heartbeat (pipeline/liveness.py). A run whose
        owner died without cleanup (SIGKILL, power loss) keeps a note of it."""
        verdict = judge(self.meta)
        if verdict.dead:
            self.meta["recovered"] = {"owner": self.meta.get("owner"), "reason": verdict.reason,
                                      "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.ownership.claim(self.meta)
        self.tracking.claimed(self.meta["owner"])

    def release(self) -> None:
        """Let another process work on this run (its lock, taken by create/open), its files all written."""
        self.writes.wait(raise_errors=False)  # a failed write was raised by settle_writes or a stage's commit
        if self._lock is not None:
            self.ownership.release(self.meta)
            self._lock.release()
            self._lock = None

    @staticmethod
    def _recorded_config(run_dir: Path, meta: dict) -> PipelineConfig:
        """The run's config from its config.yaml: environment values are read from the environment again."""
        import yaml

        source = run_dir / "config.yaml"
        try:
            doc = yaml.safe_load(source.read_text())
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise RunError(f"run {run_dir.name!r}: cannot read {source}: {str(exc).splitlines()[0]}; the run folder is "
                           "damaged (start a new run)", key="run") from None
        hidden = redacted_keys(doc)
        if hidden:
            raise RunError(f"run {run_dir.name}: {source} holds secrets written literally in the pipeline YAML, redacted "
                           f"here ({', '.join(hidden[:3])}); pass the pipeline file again (trainpipe run PIPELINE.yaml "
                           f"--resume {run_dir.name}, or --config on `stage`), or read them with ${{oc.env:VAR}}",
                           key=hidden[0])
        config = config_from_dict(doc, source=str(source), base=Path(meta.get("config_dir") or run_dir))
        if meta.get("config_hash") and config_hash(config) != meta["config_hash"]:
            raise RunError(f"run {run_dir.name}: its config resolves differently now (hash {config_hash(config)} vs "
                           f"{meta['config_hash']}): an environment variable it reads with ${{oc.env:...}} changed since "
                           "the run started; restore it, or start a new run (unchanged stages are reused)", key="config")
        return config

    def save_meta(self) -> None:
        self.ownership.save(self.meta)

    # -- tracking ----------------------------------------------------------------------------
    def _sync_tracking(self) -> None:
        """Learn early (between stages) that tracking could not start; keep run.json's MLflow id current."""
        try:
            self.tracking.check()
        except BaseException:
            self._drop_if_untracked()
            raise
        if self.tracking.mlflow_run_id and not self.meta.get("mlflow_run_id"):
            self._sync_tracking_ids()

    def _drop_if_untracked(self) -> None:
        """A run this process just created whose MLflow run never started leaves no folder behind. A run
        that existed before (resume, a later stage) is kept whatever happens: it may hold checkpoints."""
        if self.tracking.failed_to_start and self.created_here:
            shutil.rmtree(self.dir, ignore_errors=True)

    def finish(self, status: str, error: TrainpipeError | BaseException | None = None) -> None:
        self.meta["status"] = status
        self.meta["exit_code"] = exit_code_of(error)  # what `trainpipe run` exits with; `runs watch` too
        if error is not None:
            self.meta["error"] = self._scrub(getattr(error, "message", None) or f"{type(error).__name__}: {error}")
        try:
            self.log_cost()
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
            self.alerts.ended(self.meta, error)  # never raises: a channel that fails is logged once

    def usage(self) -> Usage:
        """Every attempt's usage so far: earlier processes (run.json) and this one."""
        self.meter.gpus = gpus_in_use()
        return self.earlier_usage + self.meter.usage()

    def _note_usage(self) -> dict[str, float]:
        """Record the usage so far in run.json (the report reads it) and return the run's cost metrics."""
        usage = self.usage()
        self.meta["usage"] = {"wall_s": round(usage.wall_s, 3), "cpu_s": round(usage.cpu_s, 3),
                              "gpu_s": round(usage.gpu_s, 3)}
        metrics = cost_metrics(usage, self.config.cost.effective_rates())
        self.meta["cost_usd"] = metrics["cost_usd"]
        return metrics

    def log_cost(self) -> None:
        """duration_s, cpu_s, gpu_s and cost_usd of the run so far, to MLflow (the latest value is the run's)."""
        self.tracking.metrics(self._note_usage())

    def _sync_tracking_ids(self) -> None:
        if self.tracking.mlflow_run_id:
            self.meta.update(mlflow_run_id=self.tracking.mlflow_run_id,
                             tracking_uri=redact_url_credentials(self.tracking.uri or "") or None)

    def _scrub(self, text: str) -> str:
        """Free text about to be recorded (run.json, MLflow), without the config's credentials."""
        return scrub(text, self.config.credentials())

    # -- stages ------------------------------------------------------------------------------
    def run_stage(self, name: str, memo: dict | None = None, use_cache: bool = True, on_event: Event | None = None,
                  resume_anyway: bool = False, progress: bool = False, failure: BaseException | None = None) -> dict:
        spec = SPECS[name]
        memo = {} if memo is None else memo
        key = self.cache.key(spec)
        final = self.dir / name
        emit = on_event or (lambda kind, payload: None)
        found = self.cache.find_reusable(name, key, use_cache)
        recomputed_because = None
        if found is not None:
            manifest, recomputed_because = self.cache.reuse(name, key, *found)
            if manifest is not None:
                self._record(name, manifest, final)
                emit("stage_done", manifest)
                return manifest

        emit("stage_start", {"stage": name})
        if spec.starts_tracking:
            self.tracking.release()
        self.meta["current_stage"] = {"name": name, "started_at": time.time()}  # for `runs watch`
        if self.meta.get("owner"):  # what a process found dead was doing (`runs gc` names the stage)
            self.meta["owner"]["stage"] = name
        self.save_meta()
        tmp = self.dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ctx = StageContext(self.run_id, self.dir, tmp, self.config, self.store, self.task, memo, key, resume_anyway,
                           tracking=self.tracking, progress=progress, budget=self.budget, failure=failure,
                           on_event=self.alerts.send if self.alerts.active else None, name=name, writes=self.writes)
        started = time.perf_counter()
        try:
            result = RUNNERS[name](ctx)
        except BaseException as exc:
            self.writes.wait(name, raise_errors=False)  # its files end before its folder is moved or removed
            _drop_held_arrays(memo, lambda stage: stage == name)  # what it saved is not an output
            # Stopped by a signal (Preempted from the torch loop, KeyboardInterrupt for SIGINT/SIGTERM): what
            # the stage wrote is unfinished work, not evidence; checkpoints live outside `tmp` and survive.
            killed = isinstance(exc, (Preempted, KeyboardInterrupt))
            if isinstance(exc, KeyboardInterrupt):
                exc.message = (  # type: ignore[attr-defined]  # what the CLI prints: Interrupted has one already
                    f"{getattr(exc, 'message', None) or 'interrupted'} during stage {name}")
            failed = self.dir / f"{name}.failed"
            if not killed:
                shutil.rmtree(failed, ignore_errors=True)
                if any(tmp.iterdir()):
                    os.replace(tmp, failed)  # evidence (e.g. the validation report), never an output
            shutil.rmtree(tmp, ignore_errors=True)
            self.meta.pop("current_stage", None)
            self.meta["stages"][name] = {"status": "killed" if killed else "failed",
                                         "error": self._scrub(getattr(exc, "message", str(exc)) or type(exc).__name__)}
            self.save_meta()
            if failed.exists() and not killed:
                self.tracking.evidence(name, sorted(failed.iterdir()))
            raise
        pending = self.writes.files(name)  # still being written: sizes and hashes taken from memory
        files, digests = file_sizes(tmp, pending), file_digests(tmp, pending)  # hashed in the stage's time
        self.settle_writes(other_than=name)  # an earlier stage's files are whole before a later stage commits
        manifest = {
            "stage": name, "status": "completed", "run_id": self.run_id, "cache_key": key,
            "identity": result.identity or key, "config_hash": self.meta["config_hash"],
            "code_version": __version__, "host": socket.gethostname(),
            "inputs": {u: (read_manifest(self.dir / u) or {}).get("identity") for u in spec.upstream},
            "seconds": round(time.perf_counter() - started, 3), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outputs": result.outputs, "metrics": result.metrics, "history": result.history,
            "artifacts": result.artifacts, "summary": result.summary, "files": files, "digests": digests,
        }
        if recomputed_because:
            manifest["recomputed_because"] = recomputed_because
        write_json(tmp / "manifest.json", manifest)
        replace_dir(tmp, final)
        shutil.rmtree(self.dir / f"{name}.failed", ignore_errors=True)
        index = self.cache.index(name, key)
        index.parent.mkdir(parents=True, exist_ok=True)
        # Runs computing the same stage at once each write this entry under a temporary name of their own;
        # the last rename wins and every version of it points at a complete stage folder.
        write_json(index, {"run_id": self.run_id, "stage_dir": str(final)})
        self._record(name, manifest, final)
        _drop_held_arrays(memo, lambda stage: stage != name)  # kept for the next stage only: later ones read files
        emit("stage_done", manifest)
        return manifest

    def settle_writes(self, other_than: str | None = None) -> None:
        """Wait for the stages' background writes (stages/array_writes.py); StorageError for one that failed."""
        self.writes.wait(other_than=other_than)

    def _record(self, name: str, manifest: dict, stage_dir: Path) -> None:
        self._sync_tracking()
        entry = {"status": manifest["status"], "seconds": manifest.get("seconds")}
        if manifest.get("reused_from"):
            entry["reused_from"] = manifest["reused_from"]
        if manifest.get("recomputed_because"):
            entry["recomputed_because"] = manifest["recomputed_because"]
        self.meta["stages"][name] = entry
        self._note_usage()
        self.meta.pop("current_stage", None)
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
                           "recomputed_because": state.get("recomputed_because"),
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


def exit_code_of(error: BaseException | None) -> int:
    """The CLI's exit code for how a run ended: 0, a TrainpipeError's own (2, gate 3, preempted 143), a signal's
    (130/143), 1 for a bug."""
    if error is None:
        return 0
    if isinstance(error, (TrainpipeError, KeyboardInterrupt)):
        return int(getattr(error, "exit_code", 130))
    return 1


def _lock_or_say_who(run_dir: Path, run_id: str) -> BaseFileLock:
    """The run's lock, or one line naming the process that holds it (from run.json's owner, when recorded)."""
    try:
        return lock_run(run_dir, run_id)
    except RunError as exc:
        try:
            owner = json.loads((run_dir / "run.json").read_text()).get("owner")
        except (OSError, ValueError):
            owner = None
        if not owner:
            raise
        raise RunError(f"run {run_id} is still running in {describe(owner)}; wait for it to end, or stop it "
                       f"(kill {owner.get('pid')}); two processes never write one run folder", key="run") from exc


def _refuse_if_alive(run_id: str, meta: dict) -> None:
    verdict = judge(meta)
    if verdict.state == "alive":
        raise RunError(f"run {run_id} is still running in {verdict.reason}; wait for it to end, or stop that "
                       "process (`trainpipe runs gc` marks it killed once its heartbeat is stale)", key="run")


def _drop_held_arrays(memo: dict, which: Callable[[str], bool]) -> None:
    """Forget the arrays `StageContext.save_array` kept in memory for the stages `which` accepts."""
    for key in [k for k in memo if isinstance(k, tuple) and k[:1] == ("array",) and which(k[1])]:
        del memo[key]
