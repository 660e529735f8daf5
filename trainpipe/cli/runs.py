"""`trainpipe runs list|compare` (read back from MLflow), `runs watch` (a run in progress, from the store) and
`trainpipe ui` (the MLflow UI on the store)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from trainpipe.cli.common import DebugOpt, JsonOpt, StoreOpt, _at_least_one, _execute, _reachable, _store

runs_app = typer.Typer(help="List and compare tracked runs.", no_args_is_help=True)


@runs_app.command("list")
def runs_list(
    experiment: Optional[str] = typer.Option(None, "--experiment", "-e", help="Only this experiment."),
    limit: int = typer.Option(20, "--limit", "-n", help="Most recent N runs."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: the store's)."),
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Recent runs with their headline metrics."""
    from trainpipe.cli.render import runs_table

    def body(console: Console) -> dict:
        from trainpipe.pipeline.runs import list_runs

        _at_least_one(limit, "--limit")
        if tracking_uri:
            return {"runs": list_runs(_reachable(tracking_uri) or tracking_uri, experiment, limit)}
        target = _store(None, store)
        return {"runs": list_runs(target.tracking_uri, experiment, limit, store=target)}

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
) -> None:
    """Parameters that differ and metrics side by side."""
    from trainpipe.cli.render import compare_tables

    def body(console: Console) -> dict:
        from trainpipe.pipeline.runs import compare_runs

        if html is not None and html.is_dir():
            from trainpipe.errors import RunError

            raise RunError(f"--html: {html} is a folder; give a file name such as {html / 'compare.html'}", key="--html")
        doc = compare_runs(_reachable(tracking_uri) or _store(None, store).tracking_uri, runs)
        if html is not None:
            from trainpipe.reports.build import write_comparison

            doc["html"] = write_comparison(doc, html)
            Console(stderr=True).print(f"wrote {html} ({doc['html']['bytes'] / 1e6:.2f} MB)")
        return doc

    def render(console: Console, doc: dict) -> None:
        for table in compare_tables(doc):
            console.print(table)

    _execute(body, as_json, debug, render=render)


@runs_app.command("watch")
def runs_watch(
    run_id: str = typer.Argument(..., help="The trainpipe run id."),
    interval: float = typer.Option(2.0, "--interval", help="Seconds between looks at the store."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: the store's)."),
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Follow a run from any terminal: stage, epoch/round, metrics, rows/s, resources, health events; ends with
    the run, exiting with the run's own exit code (0 completed, 2 error, 3 gate failed, 130/143 killed)."""

    def body(console: Console) -> dict:
        from trainpipe.errors import ConfigError
        from trainpipe.pipeline.watch import MetricsReader, watch

        if not 0.1 <= interval <= 3600:
            raise ConfigError(f"--interval: expected 0.1 to 3600 seconds, got {interval:g}", key="--interval")
        target = _store(None, store)
        reader = MetricsReader(_reachable(tracking_uri) or target.tracking_uri)
        if as_json:  # scripts: no live view, one final document
            return watch(target, run_id, reader, interval)
        from rich.live import Live

        from trainpipe.cli.render_watch import view

        with Live(console=console, refresh_per_second=4, transient=False) as live:
            return watch(target, run_id, reader, interval, on_snapshot=lambda doc: live.update(view(doc)))

    _execute(body, as_json, debug, ok_exit=lambda d: int(d.get("exit_code", 0)))


def runs_gc(
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be marked; change nothing."),
    stale_after: float = typer.Option(90.0, "--stale-after", help="Seconds without a heartbeat after which a run of "
                                      "another machine counts as dead (runs of this machine are checked exactly)."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="Also sweep this MLflow server's "
                                               "RUNNING runs (default: the store's)."),
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Mark runs whose process died (SIGKILL, power loss) killed: run folder and MLflow; safe to repeat."""
    from trainpipe.cli.render import gc_report

    def body(console: Console) -> dict:
        from trainpipe.errors import ConfigError
        from trainpipe.pipeline.recovery import collect_garbage

        if not stale_after > 0:
            raise ConfigError(f"--stale-after: must be more than 0 seconds (got {stale_after})", key="--stale-after")
        return collect_garbage(_store(None, store), dry_run=dry_run, stale_after=stale_after,
                               tracking_uri=_reachable(tracking_uri))

    _execute(body, as_json, debug, render=gc_report)


runs_app.command("gc")(runs_gc)
runs_app.command("repair", help="The same as `runs gc`.")(runs_gc)


def ui(
    store: Optional[str] = StoreOpt,
    port: int = typer.Option(5000, "--port", help="Port on 127.0.0.1."),
) -> None:
    """Open the MLflow UI on the local store (mlflow ui, bound to loopback)."""

    def body(console: Console) -> None:
        from trainpipe.errors import ConfigError

        if not 1 <= port <= 65535:
            raise ConfigError(f"--port: expected a port from 1 to 65535, got {port}", key="--port")
        target = _store(None, store)  # a wrong --store / TRAINPIPE_HOME is one error line
        os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", target.tracking_uri,
                                   "--host", "127.0.0.1", "--port", str(port)])

    _execute(body, False, False)
