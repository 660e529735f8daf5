"""The `trainpipe` command: parse, call the library, render with rich. Heavy imports stay inside commands.

One module per command group (run.py: run, stage, validate; init.py: init, schema; runs.py: runs, ui;
models.py: models, predict; tune.py; recommend.py; report.py; airflow.py; team.py), common.py for what
they share (options, the error contract, signals), render.py and render_registry.py for rich output.
"""

from __future__ import annotations

import json

import typer

from trainpipe.cli.airflow import airflow_app
from trainpipe.cli.init import init, schema_app
from trainpipe.cli.models import models_app, predict
from trainpipe.cli.process_exit import exit_now
from trainpipe.cli.recommend import recommend
from trainpipe.cli.report import report
from trainpipe.cli.run import run, stage, validate
from trainpipe.cli.runs import runs_app, ui
from trainpipe.cli.team import team_app
from trainpipe.cli.tune import tune

app = typer.Typer(help="One YAML file to a production training pipeline.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.add_typer(runs_app, name="runs")
app.add_typer(schema_app, name="schema")
app.add_typer(models_app, name="models")
app.add_typer(airflow_app, name="airflow")  # cli/airflow.py
app.add_typer(team_app, name="team")  # cli/team.py


@app.callback(invoke_without_command=True)
def _main(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", help="Print trainpipe's version and exit."),
          as_json: bool = typer.Option(False, "--json", help='With --version: print {"version": ...}.')) -> None:
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


app.command()(run)  # cli/run.py
app.command()(stage)
app.command()(validate)
app.command()(init)  # cli/init.py
app.command()(ui)  # cli/runs.py

app.command()(predict)  # defined with the registry commands in cli/models.py
app.command()(tune)  # cli/tune.py
app.command()(recommend)  # cli/recommend.py
app.command()(report)  # cli/report.py


def main() -> None:
    """The console script: the command, then a quick exit (cli/process_exit.py). In-process callers use `app()`."""
    try:
        app()
    except SystemExit as stop:
        exit_now(stop.code)


if __name__ == "__main__":
    main()
