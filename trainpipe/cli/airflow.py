"""`trainpipe airflow ...`: write a DAG file for a pipeline, and the generated DAG's first task."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from trainpipe.cli.common import DebugOpt, SetOpt, _execute

airflow_app = typer.Typer(help="Run a pipeline under Apache Airflow 3 (docs/orchestration.md).",
                          no_args_is_help=True)


@airflow_app.command("dag")
def dag(
    config: Path = typer.Argument(..., help="Pipeline YAML; the DAG reads it from this absolute path."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="A cron expression, a preset (@daily, "
                                           "@weekly, ...) or 'asset' (run when the input data's Airflow "
                                           "Asset is updated); default: none, trigger by hand or by API."),
    dag_id: Optional[str] = typer.Option(None, "--dag-id", help="Default: the pipeline's `name`."),
    catchup: bool = typer.Option(False, "--catchup", help="Run the schedule's missed intervals too."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
    debug: bool = DebugOpt,
) -> None:
    """Write an Airflow 3 DAG file: a first task that checks the trigger, then one task per stage."""

    def body(console: Console) -> None:
        from trainpipe.orchestration.airflow import dag_file

        text = dag_file(config, dag_id=dag_id, schedule=schedule, catchup=catchup)
        if out is None:
            sys.stdout.write(text)
        else:
            out.write_text(text)
            Console(stderr=True).print(f"wrote {out}")
        return None

    _execute(body, False, debug)


@airflow_app.command("prepare")
def prepare(
    config: Path = typer.Argument(..., help="Pipeline YAML."),
    dag_id: str = typer.Option(..., "--dag-id", help="The DAG's id."),
    dag_run_id: str = typer.Option(..., "--dag-run-id", help="Airflow's id of this DAG run."),
    stages: str = typer.Option(..., "--stages", help="The DAG's stage tasks, comma-separated, in order."),
    set_: Optional[list[str]] = SetOpt,
    debug: bool = DebugOpt,
) -> None:
    """The first task of a generated DAG: check the config with the DAG run's parameters, print the run id.

    The last line on stdout is the trainpipe run id, which Airflow passes to the stage tasks (XCom).
    """

    def body(console: Console) -> dict:
        from trainpipe.config import load_config
        from trainpipe.errors import ConfigError
        from trainpipe.orchestration.trigger import check_trigger_overrides, run_id_for
        from trainpipe.pipeline.stages import active_stages
        from trainpipe.pipeline.driver import preflight

        overrides = list(set_ or [])
        check_trigger_overrides(overrides)
        cfg = load_config(config, overrides)
        preflight(cfg)  # model parameters (a misspelt one gets a did-you-mean), the search space
        expected, wanted = tuple(stages.split(",")), active_stages(cfg)
        if expected != wanted:
            raise ConfigError(f"the config with this DAG run's parameters runs stages {', '.join(wanted)}, "
                              f"but the DAG was built for {', '.join(expected)}: a stage switched on or off "
                              "(e.g. tuning.enabled) needs the DAG rebuilt from the changed YAML",
                              key="stages")
        run_id = run_id_for(dag_id, dag_run_id)
        said = f"; overrides: {' '.join(overrides)}" if overrides else ""
        Console(stderr=True, highlight=False).print(f"DAG run {dag_run_id} is trainpipe run {run_id}{said}",
                                                    markup=False, soft_wrap=True)
        return {"run_id": run_id}

    _execute(body, False, debug, render=lambda c, d: print(d["run_id"], flush=True))
