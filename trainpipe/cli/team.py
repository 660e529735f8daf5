"""`trainpipe team up|down|status`: PostgreSQL and an MLflow tracking server on loopback (docs/team.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from trainpipe.cli.common import DebugOpt, JsonOpt, StoreOpt, _execute, _store

team_app = typer.Typer(help="Team mode: PostgreSQL + an MLflow tracking server on 127.0.0.1 (docs/team.md).",
                       no_args_is_help=True)

DirOpt = typer.Option(None, "--dir", help="Folder for the database, artifacts, logs and PIDs (default: <store>/team).")


def _folder(directory: Optional[Path], store: Optional[str]) -> Path:
    return (directory or _store(None, store).root / "team").expanduser().resolve()


@team_app.command("up")
def team_up(
    directory: Optional[Path] = DirOpt,
    pg_port: int = typer.Option(5433, "--pg-port", min=1, max=65535, help="PostgreSQL port on 127.0.0.1."),
    mlflow_port: int = typer.Option(5000, "--mlflow-port", min=1, max=65535, help="MLflow server port on 127.0.0.1."),
    workers: int = typer.Option(2, "--workers", min=1, help="MLflow server worker processes."),
    no_install: bool = typer.Option(False, "--no-install", help="Fail instead of apt-get installing PostgreSQL."),
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Install PostgreSQL if missing, start it and an MLflow tracking server; print the URIs to configure."""
    from trainpipe.team.services import TeamSettings, up

    def body(console: Console) -> dict:
        settings = TeamSettings(_folder(directory, store), pg_port=pg_port, mlflow_port=mlflow_port, workers=workers,
                                install=not no_install)
        return up(settings, say=lambda line: console.print(f"[dim]{line}[/]"))

    _execute(body, as_json, debug, render=_render_up)


@team_app.command("down")
def team_down(
    directory: Optional[Path] = DirOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Stop the MLflow server and PostgreSQL that `team up` started (by their recorded PIDs); data stays."""
    from trainpipe.team.services import down

    _execute(lambda console: down(_folder(directory, store)), as_json, debug, render=lambda c, d: c.print(
        "stopped: " + ", ".join(f"{name} {'yes' if done else 'was not running'}" for name, done in d["stopped"].items())))


@team_app.command("status")
def team_status(
    directory: Optional[Path] = DirOpt,
    store: Optional[str] = StoreOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Whether the recorded services run (and the MLflow server answers), with their URIs."""
    from trainpipe.team.services import status

    _execute(lambda console: status(_folder(directory, store)), as_json, debug, render=_render_status,
             ok_exit=lambda d: 0 if d["postgres"]["running"] and d["mlflow"]["running"] else 2)


def _render_status(console: Console, doc: dict) -> None:
    for name in ("postgres", "mlflow"):
        service = doc[name]
        state = "[green]running[/]" if service["running"] else "[red]stopped[/]"
        extra = "" if name == "postgres" else (" · answering" if doc["mlflow"].get("answering") else " · not answering")
        console.print(f"{name:9} {state}  pid {service.get('pid', '-')} · port {service.get('port', '-')}{extra}")
    _render_uris(console, doc)


def _render_up(console: Console, doc: dict) -> None:
    console.print("[green]team services running[/]" + ("" if doc["started"] else " (already)") + f" in {doc['dir']}")
    _render_uris(console, doc)


def _render_uris(console: Console, doc: dict) -> None:
    console.print(f"  tracking.uri:   {doc['tracking_uri']}\n  tuning.storage: {doc['optuna_storage']}\n"
                  f"  passwords:      export PGPASSFILE={doc['pgpass']}", soft_wrap=True)
