"""`trainpipe report RUN_ID`: (re)write a run's HTML report (docs/monitoring.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from trainpipe.cli.common import DebugOpt, JsonOpt, StoreOpt, _execute, _store


def report(
    run_id: str = typer.Argument(..., help="The trainpipe run id (any run: completed, failed or running)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here (default: <run folder>/report.html)."),
    open_: bool = typer.Option(False, "--open", help="Open the report in the default web browser."),
    store: str | None = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Write one self-contained HTML page: data, training curves, evaluation plots, gate, lineage."""

    def body(console: Console) -> dict:
        from trainpipe.errors import RunError
        from trainpipe.reports.build import write_report

        target = _store(None, store)
        run_dir = target.run_dir(run_id)
        if not (run_dir / "run.json").exists():
            raise RunError(f"report: no run {run_id!r} in {target.runs_dir} (pass --store or set TRAINPIPE_HOME)",
                           key="run")
        if out is not None and out.is_dir():
            raise RunError(f"--out: {out} is a folder; give a file name such as {out / 'report.html'}", key="--out")
        doc = write_report(run_dir, out, strict=debug)
        if open_:
            import webbrowser

            webbrowser.open(Path(doc["path"]).resolve().as_uri())
        return doc

    def render(console: Console, doc: dict) -> None:
        missing = [k for k, s in doc["sections"].items() if s["missing"]]
        console.print(f"[green]wrote[/] {doc['path']}  ({doc['bytes'] / 1e6:.2f} MB, {doc['figures']} plots, "
                      f"{doc['seconds']:.2f} s)")
        if missing:
            console.print(f"  not available: {', '.join(missing)} (the report says why)")
        for problem in doc["problems"]:
            console.print(f"  [yellow]warning:[/] {problem} (rerun with --debug for the traceback)")

    _execute(body, as_json, debug, render=render)
