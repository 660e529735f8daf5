"""A run's MLflow side: every MLflow call for one run, in order, on one background thread.

Importing MLflow, opening the store and logging cost seconds of mostly Python work; done on a
worker thread they overlap with reading data and (above all) with model training, which releases
the GIL. The pipeline never waits for MLflow until the run finishes, except to learn early that
tracking could not start. A custom tracking URI is opened synchronously first, so a wrong server
address fails the run before any work is done.
"""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from trainpipe.store import Store

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig
    from trainpipe.monitoring.events import Event
    from trainpipe.tracking.tracker import Tracker

STATUS = {"completed": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
# The longest the worker waits for a stage that starts it (`StageSpec.starts_tracking`): a run whose data stages
# take long still shows up in MLflow soon.
HOLD_SECONDS = 10.0


def event_name(event: Event) -> str:
    """How an event is named in MLflow: its kind, a health event's check after it (`health.loss_stall`)."""
    check = event.details.get("check") if event.kind == "health" else None
    return f"{event.kind}.{check}" if check else event.kind


class RunTracking:
    def __init__(self, store: Store, config: PipelineConfig, mlflow_run_id: str | None = None):
        self.store, self.config = store, config
        self.enabled = config.tracking.enabled
        self.mlflow_run_id = mlflow_run_id
        self.uri: str | None = None
        self._tracker: Tracker | None = None
        self._started = mlflow_run_id is not None  # an MLflow run exists for this trainpipe run
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._submitting = threading.Lock()  # the heartbeat thread submits too
        self.owner: dict | None = None  # this process's claim on the run (pipeline/liveness.py), tagged in MLflow
        # Calls queued before the worker may start (None: released). Why hold them: importing MLflow and opening
        # its store is 1-1.5 s of Python holding the GIL, which run beside the data stages (also GIL-bound Python
        # between their numpy and Arrow calls) slows them by about as much; started with training, which releases
        # the GIL, it costs a 1M-row xgboost run ~0.7 s less (docs/architecture.md). Released by `release()`: at once
        # for a family whose fit holds the GIL and under `trainpipe stage` (pipeline/driver.py), else when the train
        # or tune stage starts; after HOLD_SECONDS, or by `close()`.
        self._held: list[tuple[Callable, tuple, bool]] | None = [] if self.enabled else None
        self._timer: threading.Timer | None = None
        if self.enabled and config.tracking.uri:
            self._open()  # a server or database named by the user: fail now, before any work
            self._held = None  # MLflow is imported already: nothing to gain by waiting

    # -- the worker ------------------------------------------------------------------------
    def _submit(self, fn: Callable, *args: Any, start: bool = True, after_errors: bool = False) -> None:
        """Queue `fn(*args)` for the worker; `after_errors`: a cleanup that runs even after an earlier call failed."""
        if not self.enabled:
            return
        with self._submitting:
            if self._thread is None:
                if not start:
                    return
                if self._held is not None:
                    self._held.append((fn, args, after_errors))
                    if self._timer is None:
                        self._timer = threading.Timer(HOLD_SECONDS, self.release)
                        self._timer.daemon = True
                        self._timer.start()
                    return
                self._start_worker()
            self._queue.put((fn, args, after_errors))

    def _start_worker(self) -> None:
        import pyarrow.parquet  # noqa: F401  shared with the stages: import once, before the thread
        import scipy  # noqa: F401

        self._thread = threading.Thread(target=self._work, name="trainpipe-tracking", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Start the worker with the calls held so far, in their order (the train or tune stage is starting)."""
        with self._submitting:
            held, self._held = self._held, None
            timer, self._timer = self._timer, None
            if held and self._thread is None:
                self._start_worker()
            for item in held or []:
                self._queue.put(item)
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args, after_errors = item
            if self._error is None or after_errors:
                try:
                    fn(*args)
                except BaseException as exc:  # reported to the main thread by check()/close()
                    self._error = self._error or exc  # the first failure is the one to report

    def check(self) -> None:
        """Raise the worker's error, if any, in the calling thread."""
        if self._error is not None:
            raise self._error

    @property
    def failed_to_start(self) -> bool:
        return self._error is not None and not self._started

    def close(self) -> None:
        """Wait for every queued call; raise the first error."""
        self.release()
        with self._submitting:
            thread, self._thread = self._thread, None
            if thread is not None:
                if self.owner is not None:  # this process stops working on the run: no heartbeat to judge
                    self._queue.put((self._tag_owner, (None,), False))
                self._queue.put(None)
        if thread is not None:
            thread.join()
        self.check()

    # -- MLflow calls (run on the worker) ---------------------------------------------------
    def _open(self) -> Tracker:
        if self._tracker is None:
            from trainpipe.tracking.tracker import Tracker

            self._tracker = Tracker(self.store, self.config.tracking)
            self.uri = self._tracker.uri
        return self._tracker

    def _start(self, run_id: str, run_dir: Path, config_hash: str) -> None:
        from trainpipe.evaluation.metrics import primary_metric
        from trainpipe.tracking.environment import environment_tags, git_info
        from trainpipe.tracking.tracker import flatten

        tracker = self._open()
        config = self.config
        recorded = config.recorded_dict()  # secrets redacted: what MLflow params and tags may hold
        tags = {"trainpipe.run_id": run_id, "trainpipe.config_hash": config_hash, "trainpipe.run_dir": str(run_dir),
                "task": config.task, "model.type": config.model.type,
                "trainpipe.primary_metric": primary_metric(config.task, config.evaluation)[0],
                **environment_tags(), **git_info(Path.cwd()), **recorded["tracking"]["tags"], **self._owner_tags()}
        mlflow_id = tracker.start_run(config.tracking.experiment or config.name, config.tracking.run_name or run_id, tags)
        self._started = True
        try:
            tracker.log_params(mlflow_id, flatten(recorded))
            tracker.log_artifacts(mlflow_id, [run_dir / "config.yaml"], "config")
        except BaseException as exc:  # never leave an MLflow run RUNNING behind
            tracker.finish(mlflow_id, "FAILED", f"{type(exc).__name__}: {exc}")
            raise
        self.mlflow_run_id = mlflow_id

    def _run_id(self) -> str:
        """The MLflow run, once started (the worker runs every call after `start`, in order)."""
        assert self.mlflow_run_id is not None, "the MLflow run is started before anything is logged to it"
        return self.mlflow_run_id

    def _log_stage(self, name: str, stage_dir: Path, manifest: dict) -> None:
        tracker, mlflow_id = self._open(), self._run_id()
        tags = {f"trainpipe.stage.{name}": manifest["status"]}
        if name == "ingest":
            tags["trainpipe.data_fingerprint"] = manifest["identity"]
        tracker.set_tags(mlflow_id, tags)
        if manifest.get("metrics"):
            tracker.log_metrics(mlflow_id, manifest["metrics"])
        history_file = manifest.get("history")
        if history_file and (stage_dir / history_file).exists():
            # epochs already sent live (by this process, or by one killed before a resume) are not sent twice
            tracker.log_history(mlflow_id, json.loads((stage_dir / history_file).read_text()), skip_logged=True)
        tracker.log_artifacts(mlflow_id, [stage_dir / rel for rel in manifest.get("artifacts", [])], name)

    # -- what the pipeline calls -------------------------------------------------------------
    def start(self, run_id: str, run_dir: Path, config_hash: str) -> None:
        self._submit(self._start, run_id, run_dir, config_hash)

    def reopen(self) -> None:
        if self.mlflow_run_id:
            self._submit(lambda: self._open().reopen(self._run_id()))

    # -- liveness (pipeline/liveness.py) -------------------------------------------------------
    def _owner_tags(self, owner: dict | None = None) -> dict[str, str]:
        from trainpipe.pipeline.liveness import HEARTBEAT_TAG, OWNER_TAG

        owner = self.owner if owner is None else owner
        if not owner:
            return {OWNER_TAG: "null"}
        who = {k: owner.get(k) for k in ("pid", "host", "boot_id", "process_started", "since")}
        return {OWNER_TAG: json.dumps(who), HEARTBEAT_TAG: str(owner.get("heartbeat_at"))}

    def _tag_owner(self, owner: dict | None) -> None:
        if self.mlflow_run_id:
            from trainpipe.pipeline.liveness import OWNER_TAG

            self._open().set_tags(self.mlflow_run_id, self._owner_tags(owner) if owner else {OWNER_TAG: "null"})

    def claimed(self, owner: dict) -> None:
        """This process works on the run now: its owner record goes to MLflow too (once the run exists there)."""
        self.owner = owner
        if self.mlflow_run_id:
            self._submit(self._tag_owner, owner)

    def heartbeat(self, at: float) -> None:
        """The heartbeat thread's beat, queued behind the run's other calls; never starts the worker (a closed
        tracking stays closed)."""
        if self.owner is None:
            return
        from trainpipe.pipeline.liveness import HEARTBEAT_TAG

        def send() -> None:
            if self.mlflow_run_id:
                self._open().set_tags(self.mlflow_run_id, {HEARTBEAT_TAG: str(at)})

        self._submit(send, start=False)

    def adopt(self, run_id: str, run_dir: Path, config_hash: str) -> None:
        """Resume a run killed before its MLflow id reached run.json: find that MLflow run by tag, else start one."""
        self._submit(self._adopt, run_id, run_dir, config_hash)

    def _adopt(self, run_id: str, run_dir: Path, config_hash: str) -> None:
        tracker = self._open()
        experiment = tracker.experiment_id(self.config.tracking.experiment or self.config.name)
        found = [r for r in tracker.client.search_runs([experiment], f"tags.`trainpipe.run_id` = '{run_id}'")
                 if "trainpipe.stage" not in r.data.tags]  # not the tune stage's study run, which carries the id too
        if not found:
            self._start(run_id, run_dir, config_hash)
            return
        self.mlflow_run_id, self._started = found[0].info.run_id, True
        tracker.reopen(self.mlflow_run_id)
        self._tag_owner(self.owner)

    def live(self, step: int, values: dict[str, float]) -> None:
        """One iteration's values, queued as they happen (one log_batch each), under the history keys the
        stage's end then completes (`log_history(skip_logged=True)`)."""
        series = {name: [value] for name, value in values.items()}

        def send() -> None:
            if self.mlflow_run_id:
                self._open().log_history(self.mlflow_run_id, series, step)

        self._submit(send)

    def event(self, event: Event) -> None:
        """An event of the run (health, drift, budget, gate, champion) on its MLflow run: the tag
        `trainpipe.event.<name>` holds the latest one's summary, the metric `events/<name>` is 1 at the epoch or
        round where it happened (0 for the others), so the UI lists and plots them per kind."""
        name = event_name(event)
        epoch = event.details.get("epoch")
        step = int(epoch) if isinstance(epoch, int) else 0

        def send() -> None:
            if self.mlflow_run_id:
                tracker = self._open()
                tracker.set_tags(self.mlflow_run_id, {f"trainpipe.event.{name}": event.summary[:5000]})
                tracker.log_metrics(self.mlflow_run_id, {f"events/{name}": 1.0}, step=step)

        self._submit(send)

    def sample_system(self, interval_s: float, on_sample: Callable[[Mapping[str, float]], Any]) -> Callable[[], None]:
        """Start MLflow's system-metrics sampler on this run once the worker gets there (after the calls queued
        before it, in the thread that imported MLflow: the stage never waits); returns what stops it."""
        state: dict[str, Any] = {"sampler": None, "stopped": False}
        lock = threading.Lock()

        def start() -> None:
            from trainpipe.monitoring.system_metrics import start_system_metrics

            if not self.mlflow_run_id or not self.uri:
                return
            sampler = start_system_metrics(self.mlflow_run_id, self.uri, interval_s=interval_s, on_sample=on_sample)
            with lock:
                if not state["stopped"]:
                    state["sampler"], sampler = sampler, None
            if sampler is not None:  # the stage ended before the worker came to this
                sampler.stop()

        def stop_now() -> None:
            with lock:
                state["stopped"], sampler, state["sampler"] = True, state["sampler"], None
            if sampler is not None:
                sampler.stop()  # joins its thread and flushes the samples it holds

        def stop() -> None:
            # Queued behind everything the stage logged, like the start: the stage does not wait for the join
            # and the flush (~20-40 ms per stage on this machine), and the run's end still comes after them.
            self._submit(stop_now, after_errors=True)  # the sampler thread must end either way

        self._submit(start)
        return stop

    def stage(self, name: str, stage_dir: Path, manifest: dict) -> None:
        self._submit(self._log_stage, name, stage_dir, manifest)

    def metrics(self, values: dict[str, float]) -> None:
        """Run-level metrics (the run's cost), queued like every other call."""
        self._submit(lambda: self._open().log_metrics(self._run_id(), values) if self.mlflow_run_id else None)

    def evidence(self, name: str, files: list[Path]) -> None:
        """What a failed stage left behind (e.g. the validation report), logged under `<stage>.failed`."""
        self._submit(lambda: self._open().log_artifacts(self._run_id(), files, f"{name}.failed"))

    def finish(self, status: str, error: str | None) -> None:
        def end() -> None:
            if self.mlflow_run_id:
                self._open().finish(self.mlflow_run_id, STATUS[status], error)

        self._submit(end)
        self.close()
