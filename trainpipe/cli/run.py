"""`trainpipe run`, `trainpipe stage` (the orchestrator interface) and `trainpipe validate`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig

from trainpipe.cli.common import DebugOpt, JsonOpt, SetOpt, StoreOpt, _execute, _progress, _store


def run(
    config: Optional[Path] = typer.Argument(None, help="Pipeline YAML (optional with --resume)."),
    set_: Optional[list[str]] = SetOpt,
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue run RUN_ID at the stage that failed."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Use this id for the new run."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute stages even when an earlier run has them."),
    resume_anyway: bool = typer.Option(False, "--resume-anyway", help="Load training checkpoints written under "
                                       "another config or trainpipe version."),
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Run the pipeline: ingest → validate → split → features → train → evaluate → gate → register, tracked in MLflow."""
    from trainpipe.cli.render import run_summary

    def body(console: Console) -> dict:
        from trainpipe.config import load_config
        from trainpipe.errors import ConfigError
        from trainpipe.pipeline.driver import run_pipeline

        if config is None and not resume:
            raise ConfigError("run: give a pipeline YAML file (or --resume RUN_ID)", key="config")
        cfg = load_config(config, set_ or []) if config is not None else None
        target_store = _store(cfg, store)
        return run_pipeline(cfg, target_store, resume=resume, run_id=run_id, use_cache=not no_cache,
                            on_event=_progress(console), resume_anyway=resume_anyway, progress=not as_json)

    _execute(body, as_json, debug, render=run_summary)


def stage(
    name: str = typer.Argument(..., help="ingest, validate, split, features, train, evaluate, gate or register."),
    # --run-id: the same, for `torchrun ... -m trainpipe stage train --run-id ID`: torchrun's own parser takes
    # `--run` for an abbreviation of its `--run-path` (docs/distributed.md)
    run_ref: str = typer.Option(..., "--run", "--run-id", help="Run id (created with --config when new)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipeline YAML; needed when the run is new."),
    set_: Optional[list[str]] = SetOpt,
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not reuse results of earlier runs."),
    resume_anyway: bool = typer.Option(False, "--resume-anyway", help="Load training checkpoints written under "
                                       "another config or trainpipe version."),
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Run one stage of a run in this process (the orchestrator interface)."""
    from trainpipe.cli.render import run_summary

    def body(console: Console) -> dict:
        from trainpipe.config import load_config
        from trainpipe.pipeline.train_worker import run_stage  # run_one_stage, or one rank of a torchrun job

        cfg = load_config(config, set_ or []) if config is not None else None
        return run_stage(_store(cfg, store), run_ref, name, cfg, use_cache=not no_cache,
                             on_event=_progress(console), resume_anyway=resume_anyway,
                             progress=not as_json)

    _execute(body, as_json, debug, render=lambda c, d: run_summary(c, d) if d["status"] == "completed" else None)


def validate(
    config: Path = typer.Argument(..., help="Pipeline YAML."),
    set_: Optional[list[str]] = SetOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Check the config and the data (schema and labels) without running anything."""
    from trainpipe.cli.render import validation_report

    def body(console: Console) -> dict:
        from trainpipe.pipeline.checks import check_config_and_data

        return check_config_and_data(load_config_path(config, set_ or []))

    _execute(body, as_json, debug, render=validation_report, ok_exit=lambda d: 0 if d["passed"] else 2)


def load_config_path(config: Path, overrides: list[str]) -> PipelineConfig:
    from trainpipe.config import load_config

    return load_config(config, overrides)
