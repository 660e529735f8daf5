"""Driving a run: every stage in order (`trainpipe run`, resume) or one stage (`trainpipe stage`), and how the run
ends when a stage raises. The run folder, its stages' caching and its record are pipeline/run.py's `Run`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from trainpipe.config import PipelineConfig
from trainpipe.errors import Preempted, RunError, TrainpipeError
from trainpipe.pipeline.alerting import check_alerts
from trainpipe.pipeline.run import Event, Run
from trainpipe.pipeline.stages import SPECS, STAGE_NAMES, active_stages
from trainpipe.store import Store


def _preempted(run: Run, exc: Preempted, again: str) -> None:
    """SIGTERM after a checkpoint: killed but resumable (MLflow KILLED, run.json says how to continue)."""
    exc.message = exc.lines[0] = f"{exc.message}; continue with `{again}`"
    run.meta["resumable"] = True
    run.finish("killed", exc)


@contextlib.contextmanager
def _ends_on_error(run: Run, again: str) -> Iterator[None]:
    """How a run ends when a stage raises: preempted (resumable with `again`), killed (Ctrl-C) or failed."""
    try:
        yield
    except Preempted as exc:
        _preempted(run, exc, again)
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGINT turned into one by the CLI (cli/common.py)
        exc.message = (  # type: ignore[attr-defined]  # what the CLI prints
            f"{getattr(exc, 'message', None) or 'interrupted'}; continue with `{again}`")
        run.meta["resumable"] = True
        run.finish("killed", exc)
        raise
    except BaseException as exc:
        run.finish("failed", exc)
        raise


def preflight(config: PipelineConfig) -> None:
    """Checks that need no data: the model family and its parameters, before a run folder exists."""
    from trainpipe.models import get_family
    from trainpipe.stages.train import check_distributed

    get_family(config.model.type).check_config(dict(config.model.params), config.model.estimator, config.task)
    check_distributed(config)  # torchrun only for the torch families
    check_alerts(config)  # a channel whose URL or credentials are not in the environment could never alert
    if config.tuning.enabled:
        from trainpipe.tuning.checks import check_space

        check_space(config)  # every searched name is a parameter of the family, at both ends of its range


def tracking_waits_for_training(config: PipelineConfig) -> bool:
    """Whether the run's MLflow worker waits for the train (or tune) stage: only when the family's fit releases the
    GIL. Measured on 1M rows: xgboost's run 0.3-0.7 s faster with the wait; torch_mlp's train stage 5.1-5.8 s with
    it against 3.5-3.7 s without (MLflow's import then competes with the Python training loop for the GIL)."""
    from trainpipe.models import get_family

    return bool(getattr(get_family(config.model.type), "fit_releases_gil", False))


def run_pipeline(config: PipelineConfig | None, store: Store, *, resume: str | None = None, run_id: str | None = None,
                 use_cache: bool = True, until: str | None = None, on_event: Event | None = None,
                 resume_anyway: bool = False, progress: bool = False) -> dict:
    """Run every stage in order (or resume a failed run), tracking in MLflow; returns the run summary."""
    for given, option in ((resume, "--resume"), (run_id, "--run-id")):
        if given is not None:
            store.run_dir(given, option)  # a malformed id is refused before any work, naming its option
    if config is not None:
        preflight(config)
    if resume:
        run = Run.open(store, resume, config)
    elif config is None:
        raise RunError("run: give a pipeline config (or a run to resume)", key="config")
    else:
        run = Run.create(config, store, run_id)
    if not tracking_waits_for_training(run.config):
        run.tracking.release()
    try:
        return _run_stages(run, resume=bool(resume), until=until, use_cache=use_cache, on_event=on_event,
                           resume_anyway=resume_anyway, progress=progress)
    finally:
        run.release()


def _run_stages(run: Run, *, resume: bool, until: str | None, use_cache: bool, on_event: Event | None,
                resume_anyway: bool, progress: bool) -> dict:
    if resume:
        preflight(run.config)
        if run.meta.get("mlflow_run_id"):
            run.tracking.reopen()
        else:  # killed (SIGKILL) before the tracking worker's id was saved
            run.tracking.adopt(run.run_id, run.dir, run.meta["config_hash"])
        run.meta["status"] = "running"
        run.meta.pop("error", None)
        run.meta.pop("resumable", None)
        run.meta.pop("exit_code", None)
    if on_event:
        on_event("run_start", {"run_id": run.run_id, "run_dir": str(run.dir), "resumed": bool(resume)})
    memo: dict = {}
    names = active_stages(run.config)
    names = names if until is None else names[: names.index(until) + 1]
    with _ends_on_error(run, f"trainpipe run --resume {run.run_id}"):
        failure: Exception | None = None
        for i, name in enumerate(names):
            if failure is not None and not isinstance(failure, SPECS[name].runs_after_failure):
                continue
            try:
                run.run_stage(name, memo, use_cache=use_cache, on_event=on_event, resume_anyway=resume_anyway,
                              progress=progress, failure=failure)
            except Exception as exc:  # a signal (KeyboardInterrupt) ends the run at once
                if failure is not None:
                    raise failure from exc  # a stage that runs after a failure failed too: the first one ends the run
                if not any(isinstance(exc, SPECS[later].runs_after_failure) for later in names[i + 1:]):
                    raise
                failure = exc  # e.g. GateFailed: the report still runs, then the run ends with it
        if failure is not None:
            raise failure
        run.settle_writes()
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


def _recorded_failure(run: Run, name: str) -> TrainpipeError | None:
    """A stage of this run that failed in an earlier process, as the error the run ended with: the stage that
    runs after it (the report) says so, and the run stays failed."""
    failed = next((s for s, state in run.meta["stages"].items() if state.get("status") == "failed" and s != name),
                  None)
    if failed is None:
        return None
    return RunError(run.meta["stages"][failed].get("error") or f"stage {failed} failed", key="stage")


def run_one_stage(store: Store, run_id: str, name: str, config: PipelineConfig | None = None,
                  use_cache: bool = True, on_event: Event | None = None, resume_anyway: bool = False,
                  progress: bool = False) -> dict:
    """One stage of a run in this process: what an orchestrator task calls."""
    if name not in SPECS:
        import difflib

        close = difflib.get_close_matches(name, STAGE_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RunError(f"stage: unknown stage {name!r}{hint}; stages are {', '.join(STAGE_NAMES)}", key="stage")
    if not store.run_dir(run_id, "--run").exists():
        if name != STAGE_NAMES[0]:
            raise RunError(_missing_run(store, run_id, name, config), key="stage")
        if config is None:
            raise RunError(f"run {run_id!r} not found in {store.runs_dir}; pass --config to create it", key="run")
        preflight(config)
        run = Run.create(config, store, run_id)
    else:
        run = Run.open(store, run_id, config)
        if not SPECS[name].active(run.config):
            run.release()
            raise RunError(f"stage {name} is off in this run's config: it needs {SPECS[name].enabled_by}: true",
                           key="stage")
        if run.meta["status"] != "running":
            run.tracking.reopen()
        run.meta["status"] = "running"
    # One stage per process: no later stage to start MLflow beside, so it starts with this one (RunTracking's hold
    # would only move its import after the stage).
    run.tracking.release()
    try:
        earlier = _recorded_failure(run, name)  # e.g. the gate of this run failed in an earlier process (Airflow)
        with _ends_on_error(run, f"trainpipe stage {name} --run {run.run_id}"):
            run.run_stage(name, use_cache=use_cache, on_event=on_event, resume_anyway=resume_anyway, progress=progress,
                          failure=earlier)
            run.settle_writes()  # no later stage here to write beside: the next process reads the files
        if name == active_stages(run.config)[-1]:
            run.finish("completed" if earlier is None else "failed", earlier)
        else:
            run.log_cost()
            run.tracking.close()  # this process ends here: its MLflow calls must land first
            run._sync_tracking()
            run.save_meta()
        return run.summary()
    finally:
        run.release()
