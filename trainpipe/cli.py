"""The `trainpipe` command: parse, call the library, render with rich. Heavy imports stay inside commands."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console

app = typer.Typer(help="One YAML file to a production training pipeline.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
runs_app = typer.Typer(help="List and compare tracked runs.", no_args_is_help=True)
schema_app = typer.Typer(help="Data schemas.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(schema_app, name="schema")
models_app = typer.Typer(help="Registered models: versions, aliases, promotion, rollback, history.", no_args_is_help=True)
app.add_typer(models_app, name="models")

JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout (for scripts).")
DebugOpt = typer.Option(False, "--debug", help="Show full tracebacks.")
SetOpt = typer.Option(None, "--set", help="Override a config key: --set model.params.max_depth=8 (repeatable).")
StoreOpt = typer.Option(None, "--store", help="Store folder (default: $TRAINPIPE_HOME or ./.trainpipe).")


@contextlib.contextmanager
def _stdout_to_stderr():
    """In --json mode nothing but the document may reach stdout, not even a C library's prints."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield saved
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _execute(fn: Callable[[Console], dict | None], as_json: bool, debug: bool,
             render: Callable[[Console, dict], None] | None = None, ok_exit: Callable[[dict], int] | None = None) -> None:
    """Run a command body with the CLI's error contract: one red line and exit 2 (no traceback unless --debug)."""
    from rich.markup import escape

    from trainpipe.errors import TrainpipeError

    console = Console(stderr=as_json, highlight=False)
    err_console = Console(stderr=True, highlight=False)
    code, doc = 0, None
    with (_stdout_to_stderr() if as_json else contextlib.nullcontext()):
        try:
            doc = fn(console)
            code = ok_exit(doc) if (ok_exit and doc is not None) else 0
        except TrainpipeError as exc:
            if debug:
                import traceback

                traceback.print_exc()
            doc, code = exc.to_json(), exc.exit_code
            if not as_json and getattr(exc, "decision", None):  # a failed gate: show every check, then the line
                from trainpipe.registry_render import print_gate

                print_gate(err_console, exc.decision)
            if not as_json:
                for line in exc.lines if len(exc.lines) > 1 else [exc.message]:
                    err_console.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)
        except KeyboardInterrupt:
            doc, code = {"error": "interrupted", "key": None}, 130
            err_console.print("[red]interrupted[/]")
        except Exception as exc:  # a bug, not a user error: say so, keep the traceback one flag away
            if debug:
                raise
            doc, code = {"error": f"internal error: {type(exc).__name__}: {exc}", "key": None}, 1
            if not as_json:
                err_console.print(f"[red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} (rerun with --debug for the traceback)",
                                  soft_wrap=True)
    if as_json and doc is not None:
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
        sys.stdout.flush()
    elif doc is not None and render is not None and code in (0, 2) and not doc.get("error"):
        render(console, doc)
    raise typer.Exit(code)


def _store(config=None, store: Optional[str] = None):
    from trainpipe.store import Store

    configured = store or (config.store if config is not None else None)
    uri = config.tracking.uri if config is not None else None
    return Store.locate(configured, uri)


def _progress(console: Console):
    from trainpipe.render import stage_line

    def on_event(kind: str, payload: dict) -> None:
        if kind == "run_start":
            verb = "resuming" if payload["resumed"] else "run"
            console.print(f"[bold]{verb}[/] {payload['run_id']}  [dim]{payload['run_dir']}[/]")
        elif kind == "stage_done":
            stage_line(console, payload)

    return on_event


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
                            on_event=_progress(console), resume_anyway=resume_anyway)

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
                             on_event=_progress(console), resume_anyway=resume_anyway)

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

        frame, _ = read_table(DataConfig(path=data, target="_"))
        text = schema_to_yaml(infer_schema(frame))
        if out:
            out.write_text(text)
            Console(stderr=True).print(f"wrote {out} ({len(frame.columns)} columns)")
        else:
            sys.stdout.write(text)
        return None

    _execute(body, False, debug)


@app.command()
def init(
    directory: Path = typer.Argument(..., help="Folder to write pipeline.yaml and schema.yaml into."),
    data: str = typer.Option(..., "--data", help="A CSV or Parquet file."),
    target: str = typer.Option(..., "--target", help="The label column."),
    task: Optional[str] = typer.Option(None, "--task", help="binary, multiclass or regression (default: inferred)."),
    model: Optional[str] = typer.Option(None, "--model", help="xgboost, lightgbm or sklearn (default: xgboost)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing pipeline.yaml."),
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Write a ready-to-run, commented pipeline.yaml (with an inferred schema) for a data file."""

    def body(console: Console) -> dict:
        from trainpipe.errors import ConfigError
        from trainpipe.models import FAMILIES
        from trainpipe.scaffold import scaffold

        if task is not None and task not in ("binary", "multiclass", "regression"):
            raise ConfigError(f"--task: expected binary, multiclass or regression, got {task!r}", key="task")
        if model is not None and model not in FAMILIES:
            raise ConfigError(f"--model: expected one of {sorted(FAMILIES)}, got {model!r}", key="model.type")
        return scaffold(directory, data, target, task, model, force)

    def render(console: Console, doc: dict) -> None:
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

        return {"runs": list_runs(tracking_uri or _store(None, store).tracking_uri, experiment, limit)}

    _execute(body, as_json, debug, render=lambda c, d: c.print(runs_table(d["runs"])))


@runs_app.command("compare")
def runs_compare(
    runs: list[str] = typer.Argument(..., help="Two or more trainpipe (or MLflow) run ids."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI (default: the store's)."),
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Parameters that differ and metrics side by side."""
    from trainpipe.render import compare_tables

    def body(console: Console) -> dict:
        from trainpipe.runs import compare_runs

        return compare_runs(tracking_uri or _store(None, store).tracking_uri, runs)

    _execute(body, as_json, debug, render=lambda c, d: [c.print(t) for t in compare_tables(d)])


TrackingUriOpt = typer.Option(None, "--tracking-uri", help="MLflow tracking/registry URI (default: the store's).")


def _registry(store: Optional[str], tracking_uri: Optional[str]):
    from trainpipe.errors import RegistryError
    from trainpipe.registry import Registry
    from trainpipe.tracking import TrackingConfig

    target = _store(None, store)
    if tracking_uri is None and not (target.root / "mlflow.db").exists():
        raise RegistryError(f"no MLflow store at {target.root} (pass --store, set TRAINPIPE_HOME or --tracking-uri)",
                            key="store")
    return Registry(target, TrackingConfig(uri=tracking_uri))


@app.command()
def predict(
    model_uri: str = typer.Argument(..., help="models:/NAME@alias, models:/NAME/VERSION, a run id or a model folder."),
    data: str = typer.Argument(..., help="A CSV or Parquet file with the raw input columns."),
    out: Path = typer.Option(..., "--out", "-o", help="Parquet file to write (id column, prediction, proba_<class>)."),
    chunk_rows: int = typer.Option(200_000, "--chunk-rows", help="Rows per chunk read and predicted."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Score a raw data file with a packaged model (checksum-verified, input checked against the training schema)."""

    def body(console: Console) -> dict:
        from trainpipe.predict import predict_file

        return predict_file(model_uri, data, str(out), _store(None, store), tracking_uri, chunk_rows)

    _execute(body, as_json, debug, render=lambda c, d: c.print(
        f"[green]wrote[/] {d['out']}: {d['rows']:,} rows in {d['seconds']:.2f}s ({d['rows_per_s']:,.0f} rows/s) with {d['model']}"))


@models_app.command("list")
def models_list(
    name: Optional[str] = typer.Argument(None, help="A registered model (default: list the models)."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Versions of a model with aliases and headline metric (or every registered model)."""
    from trainpipe import registry_render as rr

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
):
    """A version's aliases, source, lineage tags and (with --card) model card; verifies its checksum."""
    from trainpipe import registry_render as rr

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
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Move @champion to VERSION (compare-and-set), recorded in the audit log."""
    from trainpipe import registry_render as rr

    def body(console: Console) -> dict:
        registry = _registry(store, tracking_uri)
        expected = registry.alias_version(name, "champion") if expect is None else (None if expect == "none" else expect)
        return registry.promote(name, version, expected=expected, reason=reason)

    _execute(body, as_json, debug, render=lambda c, d: rr.moved_line(c, d, name))


@models_app.command("rollback")
def models_rollback(
    name: str = typer.Argument(..., help="Registered model."),
    reason: str = typer.Option("rollback", "--reason", help="Recorded in the audit log."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Move @champion back to the previous champion (from the audit log)."""
    from trainpipe import registry_render as rr

    def body(console: Console) -> dict:
        return _registry(store, tracking_uri).rollback(name, reason)

    _execute(body, as_json, debug, render=lambda c, d: rr.moved_line(c, d, name))


@models_app.command("history")
def models_history(
    name: str = typer.Argument(..., help="Registered model."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
):
    """Every alias move: when, from → to, what did it, why."""
    from trainpipe import registry_render as rr

    def body(console: Console) -> dict:
        return {"name": name, "history": _registry(store, tracking_uri).history(name)}

    _execute(body, as_json, debug, render=lambda c, d: c.print(rr.history_table(name, d["history"])))


@app.command()
def ui(
    store: Optional[str] = StoreOpt,
    port: int = typer.Option(5000, "--port", help="Port on 127.0.0.1."),
):
    """Open the MLflow UI on the local store (mlflow ui, bound to loopback)."""
    target = _store(None, store)
    os.execvp(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", target.tracking_uri,
                               "--host", "127.0.0.1", "--port", str(port)])


def main() -> None:
    app()


if __name__ == "__main__":
    main()
