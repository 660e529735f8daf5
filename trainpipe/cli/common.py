"""What every CLI command shares: the common options, the error contract, the store, progress lines."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig
    from trainpipe.registry.client import Registry
    from trainpipe.store import Store

JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout (for scripts).")
DebugOpt = typer.Option(False, "--debug", help="Show full tracebacks.")
SetOpt = typer.Option(None, "--set", help="Override a config key: --set model.params.max_depth=8 (repeatable).")
StoreOpt = typer.Option(None, "--store", help="Store folder (default: $TRAINPIPE_HOME or ./.trainpipe).")


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT stopped the command; exit status 128 + the signal's number (143, 130).

    A KeyboardInterrupt, not an Exception: no library's `except Exception` swallows it, Optuna marks the
    running trial failed and re-raises it, and the pipeline ends the run as killed as it does for Ctrl-C.
    """

    def __init__(self, signum: int):
        name = signal.Signals(signum).name
        super().__init__(name)
        self.exit_code = 128 + signum
        self.message = f"stopped by {name}"


@contextlib.contextmanager
def stop_on_signals(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[None]:
    """Turn SIGTERM/SIGINT into `Interrupted`, raised in the main thread at the next Python bytecode.

    That is between two boosting rounds in XGBoost/LightGBM, whose training loops return to Python
    every round, so a stage stops within one round and cleans up. The torch loop installs its own
    SIGTERM handler while it fits (checkpoint, then `Preempted`) and puts this one back afterwards.
    A second signal while the first one's cleanup runs stops the process at once, the default way.
    A signal ignored by whoever started us (nohup, `cmd &`) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    fired: list[int] = []

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not fired:
            fired.append(signum)
            raise Interrupted(signum)
        restore()
        signal.raise_signal(signum)

    for signum in signums:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, on_signal)
    try:
        yield
    finally:
        restore()


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[int]:
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
    from trainpipe.redaction import redact_url_credentials as hide  # no URL password reaches the console

    console = Console(stderr=as_json, highlight=False)
    err_console = Console(stderr=True, highlight=False)
    code, doc = 0, None
    with (_stdout_to_stderr() if as_json else contextlib.nullcontext()):
        try:
            with stop_on_signals():
                doc = fn(console)
            code = ok_exit(doc) if (ok_exit and doc is not None) else 0
        except TrainpipeError as exc:
            if debug:
                import traceback

                traceback.print_exc()
            exc.message, exc.lines = hide(exc.message), [hide(line) for line in exc.lines]
            doc, code = exc.to_json(), exc.exit_code
            if not as_json and getattr(exc, "decision", None):  # a failed gate: show every check, then the line
                from trainpipe.cli.render_registry import print_gate

                print_gate(err_console, exc.decision)  # type: ignore[attr-defined]  # GateFailed's
            if not as_json:
                for line in exc.lines if len(exc.lines) > 1 else [exc.message]:
                    err_console.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (stop_on_signals); a run says how to continue it
            message = getattr(exc, "message", None) or "interrupted"
            doc, code = {"error": message, "key": None, "type": "Interrupted"}, getattr(exc, "exit_code", 130)
            if not as_json:
                err_console.print(f"[red]interrupted:[/] {escape(message)}", soft_wrap=True)
        except Exception as exc:  # a bug, not a user error: say so, keep the traceback one flag away
            from trainpipe.errors import StorageError, storage_problem

            problem = storage_problem(exc)  # disk full, read-only store, damaged database: the user's to fix
            if debug:
                raise
            if problem is not None:
                storage = StorageError(hide(f"{problem}; free space or repair the store, then run the command "
                                            "again (a run continues with --resume)"), key="store")
                doc, code = storage.to_json(), storage.exit_code
                if not as_json:
                    err_console.print(f"[red]error:[/] {escape(storage.message)}", soft_wrap=True)
            else:
                doc, code = {"error": hide(f"internal error: {type(exc).__name__}: {exc}"), "key": None}, 1
                if not as_json:
                    err_console.print(f"[red]internal error:[/] {type(exc).__name__}: {escape(hide(str(exc)))} (rerun "
                                      "with --debug for the traceback)", soft_wrap=True)
    if as_json and doc is not None:
        sys.stdout.write(json.dumps(doc, default=str) + "\n")
        sys.stdout.flush()
    elif doc is not None and render is not None and code in (0, 2) and not doc.get("error"):
        render(console, doc)
    raise typer.Exit(code)


def _store(config: PipelineConfig | None = None, store: Optional[str] = None) -> Store:
    from trainpipe.store import Store

    configured = store or (config.store if config is not None else None)
    uri = config.tracking.uri if config is not None else None
    return Store.locate(configured, uri, source="--store" if store else "store")


def _progress(console: Console) -> Callable[[str, dict], None]:
    from trainpipe.cli.render import stage_line

    def on_event(kind: str, payload: dict) -> None:
        if kind == "run_start":
            verb = "resuming" if payload["resumed"] else "run"
            console.print(f"[bold]{verb}[/] {payload['run_id']}  [dim]{payload['run_dir']}[/]")
        elif kind == "stage_done":
            stage_line(console, payload)

    return on_event


TrackingUriOpt = typer.Option(None, "--tracking-uri", help="MLflow tracking/registry URI (default: the store's).")


def _at_least_one(value: int, option: str) -> int:
    from trainpipe.errors import ConfigError

    if value < 1:
        raise ConfigError(f"{option}: must be at least 1 (got {value})", key=option)
    return value


def _reachable(tracking_uri: str | None) -> str | None:
    """--tracking-uri, after one TCP connection to an http(s) server: MLflow retries a server that does not
    answer for minutes (7 retries, exponential backoff) before it fails; this says so in one line at once."""
    if tracking_uri is None or not tracking_uri.startswith(("http://", "https://")):
        return tracking_uri
    import socket
    from urllib.parse import urlparse

    from trainpipe.errors import ConfigError

    try:
        parsed = urlparse(tracking_uri)
        address = (parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80))
        if not parsed.hostname:
            raise ValueError("no host name")
        socket.create_connection(address, timeout=5).close()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ConfigError(f"--tracking-uri: cannot reach {tracking_uri} ({reason})", key="--tracking-uri") from None
    return tracking_uri


def _registry(store: Optional[str], tracking_uri: Optional[str]) -> Registry:
    from trainpipe.errors import RegistryError
    from trainpipe.registry.client import Registry
    from trainpipe.tracking.config import TrackingConfig

    tracking_uri = _reachable(tracking_uri)
    target = _store(None, store)
    if tracking_uri is None and not (target.root / "mlflow.db").exists():
        raise RegistryError(f"no MLflow store at {target.root} (pass --store, set TRAINPIPE_HOME or --tracking-uri)",
                            key="store")
    return Registry(target, TrackingConfig(uri=tracking_uri))
