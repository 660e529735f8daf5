"""`trainpipe models ...` and `trainpipe predict`: the registry side of the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

from trainpipe.cli.common import (DebugOpt, JsonOpt, StoreOpt, TrackingUriOpt, _execute, _reachable,
                                  _registry, _store)

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig

AlertConfigOpt = typer.Option(None, "--config", help="Pipeline YAML whose `alerts` section announces the "
                              "champion change (webhook, e-mail).")


def _alert_config(path: Optional[Path]) -> PipelineConfig | None:
    """The pipeline config named by --config, read before anything moves (a broken file changes nothing)."""
    if path is None:
        return None
    from trainpipe.config import load_config
    from trainpipe.pipeline.alerting import check_alerts

    cfg = load_config(path)
    check_alerts(cfg)
    return cfg


def _alerted(move: dict, name: str, by: str, cfg: PipelineConfig | None, store: Optional[str]) -> dict:
    """The alias move, announced as champion_changed through the config's alert channels (never fails the move)."""
    if cfg is not None:
        from trainpipe.monitoring import events
        from trainpipe.pipeline.alerting import send_alert

        event = events.champion_changed(name, "champion", move.get("from"), move["to"], by=by)
        move = {**move, "alerted": send_alert(cfg, _store(cfg, store), event)}
    return move


models_app = typer.Typer(help="Registered models: versions, aliases, promotion, rollback, history.", no_args_is_help=True)


def predict(
    model_uri: str = typer.Argument(..., help="models:/NAME@alias, models:/NAME/VERSION, a run id or a model folder."),
    data: str = typer.Argument(..., help="A CSV or Parquet file with the raw input columns."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write (id column, prediction, proba_<class>)."),
    chunk_rows: int = typer.Option(200_000, "--chunk-rows", help="Rows per chunk read and predicted."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Score a raw data file with a packaged model (checksum-verified, input checked against the training schema)."""

    def body(console: Console) -> dict:
        from trainpipe.registry.predict import predict_file

        return predict_file(model_uri, data, str(out), _store(None, store), _reachable(tracking_uri), chunk_rows)

    _execute(body, as_json, debug, render=lambda c, d: c.print(
        f"[green]wrote[/] {d['out']}: {d['rows']:,} rows in {d['seconds']:.2f}s ({d['rows_per_s']:,.0f} rows/s) with {d['model']}"))


@models_app.command("list")
def models_list(
    name: Optional[str] = typer.Argument(None, help="A registered model (default: list the models)."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Versions of a model with aliases and headline metric (or every registered model)."""
    from trainpipe.cli import render_registry as rr

    def body(console: Console) -> dict:
        registry = _registry(store, tracking_uri)
        return {"name": name, "versions": registry.versions(name)} if name else {"models": registry.models()}

    _execute(body, as_json, debug, render=lambda c, d: c.print(
        rr.versions_table(d["name"], d["versions"]) if d.get("name") else rr.models_table(d["models"])))


@models_app.command("describe")
def models_describe(
    ref: str = typer.Argument(..., help="NAME, NAME@alias or NAME/VERSION."),
    card: bool = typer.Option(False, "--card", help="Also print the model card."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """A version's aliases, source, lineage tags and (with --card) model card; verifies its checksum."""
    from trainpipe.cli import render_registry as rr

    def body(console: Console) -> dict:
        registry = _registry(store, tracking_uri)
        doc = registry.describe(ref)
        registry.verified_path(f"{doc['name']}/{doc['version']}")  # a tampered package fails here
        return {**doc, "sha256_verified": True}

    _execute(body, as_json, debug, render=lambda c, d: rr.describe(c, d, card))


@models_app.command("promote")
def models_promote(
    name: str = typer.Argument(..., help="Registered model."),
    version: str = typer.Argument(..., help="Version to make champion."),
    expect: Optional[str] = typer.Option(None, "--expect", help="Only if the champion is still this version "
                                         "(default: the champion read when the command starts; 'none' for no champion)."),
    reason: str = typer.Option("manual promotion", "--reason", help="Recorded in the audit log."),
    config: Optional[Path] = AlertConfigOpt,
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Move @champion to VERSION (compare-and-set), recorded in the audit log."""
    from trainpipe.cli import render_registry as rr

    def body(console: Console) -> dict:
        version_number("VERSION", version)
        if expect is not None and expect != "none":
            version_number("--expect", expect)
        cfg = _alert_config(config)
        registry = _registry(store, tracking_uri)
        expected = registry.alias_version(name, "champion") if expect is None else (None if expect == "none" else expect)
        return _alerted(registry.promote(name, version, expected=expected, reason=reason), name, "models promote",
                        cfg, store)

    _execute(body, as_json, debug, render=lambda c, d: rr.moved_line(c, d, name))


def version_number(option: str, value: str) -> None:
    """A version is MLflow's positive integer; anything else would reach MLflow as part of a model name."""
    from trainpipe.errors import ConfigError

    if not (value.isascii() and value.isdigit() and int(value) > 0):
        also = " or 'none'" if option == "--expect" else ""
        raise ConfigError(f"{option}: expected a version number such as 3{also}, got {value!r}", key=option)


@models_app.command("rollback")
def models_rollback(
    name: str = typer.Argument(..., help="Registered model."),
    reason: str = typer.Option("rollback", "--reason", help="Recorded in the audit log."),
    config: Optional[Path] = AlertConfigOpt,
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Move @champion back to the previous champion (from the audit log)."""
    from trainpipe.cli import render_registry as rr

    def body(console: Console) -> dict:
        cfg = _alert_config(config)
        return _alerted(_registry(store, tracking_uri).rollback(name, reason), name, "models rollback", cfg, store)

    _execute(body, as_json, debug, render=lambda c, d: rr.moved_line(c, d, name))


@models_app.command("history")
def models_history(
    name: str = typer.Argument(..., help="Registered model."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Every alias move: when, from → to, what did it, why."""
    from trainpipe.cli import render_registry as rr

    def body(console: Console) -> dict:
        return {"name": name, "history": _registry(store, tracking_uri).history(name)}

    _execute(body, as_json, debug, render=lambda c, d: c.print(rr.history_table(name, d["history"])))
