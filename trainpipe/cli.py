"""The `trainpipe` command: parse, call the library, render with rich. Heavy imports stay inside commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from trainpipe.cli_airflow import airflow_app
from trainpipe.cli_common import (DebugOpt, JsonOpt, SetOpt, StoreOpt, _at_least_one, _execute, _progress,
                                  _reachable, _store)
from trainpipe.cli_models import models_app, predict
from trainpipe.cli_ranking import recommend
from trainpipe.cli_report import report
from trainpipe.cli_team import team_app
from trainpipe.cli_tune import tune

app = typer.Typer(help="One YAML file to a production training pipeline.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
runs_app = typer.Typer(help="List and compare tracked runs.", no_args_is_help=True)
schema_app = typer.Typer(help="Data schemas.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(schema_app, name="schema")
app.add_typer(models_app, name="models")
app.add_typer(airflow_app, name="airflow")  # cli_airflow.py
app.add_typer(team_app, name="team")  # cli_team.py


@app.callback(invoke_without_command=True)
def _main(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", help="Print trainpipe's version and exit."),
          as_json: bool = typer.Option(False, "--json", help='With --version: print {"version": ...}.')):
    """One YAML file to a production training pipeline."""
    if version:
        from trainpipe import __version__

        typer.echo(json.dumps({"version": __version__}) if as_json else f"trainpipe {__version__}")
        raise typer.Exit(0)
    if as_json:  # the commands take --json after their name
        raise typer.BadParameter("goes after the command (trainpipe run pipeline.yaml --json) or with --version",
                                 param_hint="--json")
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


@app.command()
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
):
    """Run the pipeline: ingest → validate → split → features → train → evaluate → gate → register, tracked in MLflow."""
    from trainpipe.render import run_summary

    def body(console: Console) -> dict:
        from trainpipe.config import load_config
        from trainpipe.errors import ConfigError
        from trainpipe.pipeline import run_pipeline

        if config is None and not resume:
            raise ConfigError("run: give a pipeline YAML file (or --resume RUN_ID)", key="config")
        cfg = load_config(config, set_ or []) if config is not None else None
        target_store = _store(cfg, store)
        return run_pipeline(cfg, target_store, resume=resume, run_id=run_id, use_cache=not no_cache,
                            on_event=_progress(console), resume_anyway=resume_anyway, progress=not as_json)

    _execute(body, as_json, debug, render=run_summary)


@app.command()
def stage(
    name: str = typer.Argument(..., help="ingest, validate, split, features, train, evaluate, gate or register."),
    run_ref: str = typer.Option(..., "--run", help="Run id (created with --config when new)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipeline YAML; needed when the run is new."),
    set_: Optional[list[str]] = SetOpt,
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not reuse results of earlier runs."),
    resume_anyway: bool = typer.Option(False, "--resume-anyway", help="Load training checkpoints written under "
                                       "another config or trainpipe version."),
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Run one stage of a run in this process (the orchestrator interface)."""
    from trainpipe.render import run_summary

    def body(console: Console) -> dict:
        from trainpipe.config import load_config
        from trainpipe.pipeline import run_one_stage

        cfg = load_config(config, set_ or []) if config is not None else None
        return run_one_stage(_store(cfg, store), run_ref, name, cfg, use_cache=not no_cache,
                             on_event=_progress(console), resume_anyway=resume_anyway,
                             progress=not as_json)

    _execute(body, as_json, debug, render=lambda c, d: run_summary(c, d) if d["status"] == "completed" else None)


@app.command()
def validate(
    config: Path = typer.Argument(..., help="Pipeline YAML."),
    set_: Optional[list[str]] = SetOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Check the config and the data (schema and labels) without running anything."""
    from trainpipe.render import validation_report

    def body(console: Console) -> dict:
        from trainpipe.checks import check_config_and_data

        return check_config_and_data(load_config_path(config, set_ or []))

    _execute(body, as_json, debug, render=validation_report, ok_exit=lambda d: 0 if d["passed"] else 2)


def load_config_path(config: Path, overrides: list[str]):
    from trainpipe.config import load_config

    return load_config(config, overrides)


@schema_app.command("infer")
def schema_infer(
    data: str = typer.Argument(..., help="Data file, glob or URL."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
    debug: bool = DebugOpt,
):
    """Write a starting schema (dtypes, nullability, observed ranges, categories) as YAML."""

    def body(console: Console) -> None:
        from trainpipe.data.io import DataConfig, read_table
        from trainpipe.data.schema import infer_schema, schema_to_yaml
        from trainpipe.output_file import atomic_output, check_output

        if out:
            check_output(out, "schema.yaml")
        frame, _ = read_table(DataConfig(path=data, target="_"))
        text = schema_to_yaml(infer_schema(frame))
        if out:
            with atomic_output(out, "schema.yaml") as tmp:
                tmp.write_text(text)
            Console(stderr=True).print(f"wrote {out} ({len(frame.columns)} columns)")
        else:
            sys.stdout.write(text)
        return None

    _execute(body, False, debug)


@app.command()
def init(
    directory: Path = typer.Argument(..., help="Folder to write pipeline.yaml and schema.yaml into."),
    data: str = typer.Option(..., "--data", help="A CSV or Parquet file."),
    target: Optional[str] = typer.Option(None, "--target", help="The label column (every task but ranking)."),
    task: Optional[str] = typer.Option(None, "--task", help="binary, multiclass, regression (default: inferred) or ranking."),
    model: Optional[str] = typer.Option(None, "--model", help="xgboost, lightgbm, sklearn or torch_mlp (default: "
                                        "xgboost, else lightgbm, else sklearn: the first installed)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing pipeline.yaml."),
    user: Optional[str] = typer.Option(None, "--user", help="--task ranking: the user id column."),
    item: Optional[str] = typer.Option(None, "--item", help="--task ranking: the item id column."),
    time_col: Optional[str] = typer.Option(None, "--time", help="--task ranking: the timestamp column."),
    rating: Optional[str] = typer.Option(None, "--rating", help="--task ranking: the rating column."),
    positive_threshold: Optional[float] = typer.Option(None, "--positive-threshold",
                                                       help="--task ranking: ratings >= this are positives."),
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Write a ready-to-run, commented pipeline.yaml (with an inferred schema) for a data file."""

    def body(console: Console) -> dict:
        from trainpipe.errors import ConfigError
        from trainpipe.scaffold import SCAFFOLD, scaffold

        if task == "ranking":  # an interactions table: trainpipe/ranking/scaffold.py
            from trainpipe.ranking.scaffold import scaffold_ranking

            return scaffold_ranking(directory, data, user, item, time_col, rating, positive_threshold, force)
        if task is not None and task not in ("binary", "multiclass", "regression"):
            raise ConfigError(f"--task: expected binary, multiclass, regression or ranking, got {task!r}", key="task")
        if target is None:
            raise ConfigError("--target: required (the label column) unless --task ranking", key="--target")
        if model is not None and model not in SCAFFOLD:
            raise ConfigError(f"--model: expected one of {', '.join(SCAFFOLD)}, got {model!r}", key="model.type")
        return scaffold(directory, data, target, task, model, force)

    def render(console: Console, doc: dict) -> None:
        if doc["task"] == "ranking":
            console.print(f"[green]wrote[/] {doc['pipeline']}\n  task ranking · model two_tower · {doc['rows']:,} rows · "
                          f"{doc['positives']:,} positives · {doc['users']:,} users · {doc['items']:,} items")
            console.print(f"next: [bold]trainpipe run {doc['pipeline']}[/]")
            return
        console.print(f"[green]wrote[/] {doc['pipeline']} and {doc['schema']}")
        console.print(f"  task {doc['task']} · model {doc['model']} · {doc['rows']:,} rows"
                      + (f" · id column {doc['id_columns'][0]}" if doc["id_columns"] else "")
                      + (f" · numbers-in-text columns {', '.join(doc['coerced'])}" if doc["coerced"] else ""))
        console.print(f"next: [bold]trainpipe run {doc['pipeline']}[/]")

    _execute(body, as_json, debug, render=render)


@runs_app.command("list")
def runs_list(
    experiment: Optional[str] = typer.Option(None, "--experiment", "-e", help="Only this experiment."),
    limit: int = typer.Option(20, "--limit", "-n", help="Most recent N runs."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: the store's)."),
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Recent runs with their headline metrics."""
    from trainpipe.render import runs_table

    def body(console: Console) -> dict:
        from trainpipe.runs import list_runs

        _at_least_one(limit, "--limit")
        return {"runs": list_runs(_reachable(tracking_uri) or _store(None, store).tracking_uri, experiment, limit)}

    _execute(body, as_json, debug, render=lambda c, d: c.print(runs_table(d["runs"])))


@runs_app.command("compare")
def runs_compare(
    runs: list[str] = typer.Argument(..., help="Two or more trainpipe (or MLflow) run ids."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: the store's)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write an HTML page overlaying the runs' learning "
                                        "curves and metrics."),
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Parameters that differ and metrics side by side."""
    from trainpipe.render import compare_tables

    def body(console: Console) -> dict:
        from trainpipe.runs import compare_runs

        if html is not None and html.is_dir():
            from trainpipe.errors import RunError

            raise RunError(f"--html: {html} is a folder; give a file name such as {html / 'compare.html'}", key="--html")
        doc = compare_runs(_reachable(tracking_uri) or _store(None, store).tracking_uri, runs)
        if html is not None:
            from trainpipe.reports.build import write_comparison

            doc["html"] = write_comparison(doc, html)
            Console(stderr=True).print(f"wrote {html} ({doc['html']['bytes'] / 1e6:.2f} MB)")
        return doc

    _execute(body, as_json, debug, render=lambda c, d: [c.print(t) for t in compare_tables(d)])


@app.command()
def ui(
    store: Optional[str] = StoreOpt,
    port: int = typer.Option(5000, "--port", help="Port on 127.0.0.1."),
):
    """Open the MLflow UI on the local store (mlflow ui, bound to loopback)."""

    def body(console: Console) -> None:
        from trainpipe.errors import ConfigError

        if not 1 <= port <= 65535:
            raise ConfigError(f"--port: expected a port from 1 to 65535, got {port}", key="--port")
        target = _store(None, store)  # a wrong --store / TRAINPIPE_HOME is one error line
        os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", target.tracking_uri,
                                   "--host", "127.0.0.1", "--port", str(port)])

    _execute(body, False, False)


app.command()(predict)  # defined with the registry commands in cli_models.py
app.command()(tune)  # cli_tune.py
app.command()(recommend)  # cli_ranking.py
app.command()(report)  # cli_report.py


def main() -> None:
    app()


if __name__ == "__main__":
    main()
