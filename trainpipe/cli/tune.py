"""`trainpipe tune`: the pipeline with the tune stage switched on; `--dashboard` opens optuna-dashboard."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from trainpipe.cli.common import DebugOpt, JsonOpt, SetOpt, StoreOpt, _execute, _progress, _store


def tune(
    config: Path = typer.Argument(..., help="Pipeline YAML (its `tuning` section, or the family's default space)."),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="Trials in the study in total; a resumed "
                                         "study runs only the missing ones (tuning.n_trials)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.001, help="Seconds this invocation may spend "
                                            "on trials (tuning.timeout)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes sharing the study "
                                          "(tuning.workers)."),
    trial_world_size: Optional[int] = typer.Option(None, "--trial-world-size", min=1, help="torch families: "
                                                   "processes of each trial, a DDP job under torchrun "
                                                   "(tuning.trial_world_size)."),
    join: bool = typer.Option(False, "--join", help="Only add trials to the shared study (another machine's "
                              "`trainpipe tune` trains and registers the best): stop after the tune stage."),
    dashboard: bool = typer.Option(False, "--dashboard", help="Open the study storage in optuna-dashboard "
                                   "instead of tuning (pip install optuna-dashboard)."),
    port: int = typer.Option(8080, "--port", help="--dashboard: port on 127.0.0.1."),
    set_: Optional[list[str]] = SetOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Search parameters with Optuna, then train, evaluate, gate and register the best (docs/tuning.md)."""

    def body(console: Console) -> dict:
        from trainpipe.config import load_config
        from trainpipe.pipeline.driver import run_pipeline

        overrides = list(set_ or []) + ["tuning.enabled=true"]
        for key, value in (("n_trials", trials), ("timeout", timeout), ("workers", workers),
                           ("trial_world_size", trial_world_size)):
            if value is not None:
                overrides.append(f"tuning.{key}={value}")
        cfg = load_config(config, overrides)
        target = _store(cfg, store)
        if dashboard:
            _open_dashboard(cfg.tuning.storage or target.optuna_uri, port)
        summary = run_pipeline(cfg, target, on_event=_progress(console), until="tune" if join else None,
                               progress=not as_json)
        study_file = Path(summary["run_dir"]) / "tune" / "study.json"
        study = json.loads(study_file.read_text()) if study_file.exists() else None
        registered = summary.get("registered") or {}
        return {"study": study, "run_id": summary["run_id"], "registered_version": registered.get("version"), **summary}

    _execute(body, as_json, debug, render=_render)


def _open_dashboard(storage: str, port: int) -> None:
    from trainpipe.errors import MissingDependency

    found = shutil.which("optuna-dashboard", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        raise MissingDependency("--dashboard: optuna-dashboard is not installed; pip install optuna-dashboard "
                                f"(or run: optuna-dashboard {storage})", key="dashboard")
    os.execv(found, [found, storage, "--host", "127.0.0.1", "--port", str(port)])


def _render(console: Console, doc: dict) -> None:
    from trainpipe.cli.render import run_summary

    run_summary(console, doc)
    study = doc.get("study")
    if study:
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in study["best_params"].items())
        counts = " · ".join(f"{n} {state.lower()}" for state, n in sorted(study["trials"].items()))
        console.print(f"[bold]study[/] {study['study']}  [dim]{study['storage']}[/]")
        console.print(f"  trials: {counts}  ·  {study['message']}")
        console.print(f"  best {study['metric']} {study['best_value']:.5g} (trial {study['best_trial']}): {params}")
        if study.get("fixed_params"):
            fixed = ", ".join(f"{k}={v}" for k, v in study["fixed_params"].items())
            console.print(f"  fixed by model.params, not searched: {fixed}")
        if study.get("plots_skipped"):
            console.print(f"  [dim]plots skipped: {', '.join(study['plots_skipped'])}[/]")
