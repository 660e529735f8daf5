"""What only MLflow knows about a run: its start and end, the environment tags logged when it started
(git commit, library versions, host), and the registered version's aliases now (they move after the run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trainpipe.reports.folder import RunFolder
from trainpipe.redaction import redact_url_credentials


SYSTEM_PREFIX = "system/"
MAX_SYSTEM_SERIES = 12  # CPU, memory, disk, network and a few GPU series


@dataclass
class Tracked:
    reason: str | None = None  # why nothing could be read (then every other field is empty)
    status: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] | None = None  # the registered version's aliases today
    source: str = "logged to MLflow when the run started"  # where the tags come from
    # MLflow's system metrics of the run (`system/...`, monitoring/system_metrics.py): name -> (steps, values)
    system: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


def lookup(folder: RunFolder, tracking_uri: str | None = None) -> Tracked:
    """Read the run (and its registered version) from MLflow; never raises: a report renders without it."""
    uri = tracking_uri or folder.meta.get("tracking_uri")
    run_id = folder.meta.get("mlflow_run_id")
    if not folder.setting("tracking.enabled", True):
        return Tracked(reason="tracking was off for this run (tracking.enabled: false)")
    if not uri or not run_id:
        return Tracked(reason="run.json names no MLflow run")
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return Tracked(reason=f"no MLflow store at {uri.removeprefix('sqlite:///')}")
    try:
        import logging

        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        run = client.get_run(run_id)
        found = Tracked(status=run.info.status, start_ms=run.info.start_time, end_ms=run.info.end_time,
                        tags=dict(run.data.tags))
        for name in sorted(n for n in run.data.metrics if n.startswith(SYSTEM_PREFIX))[:MAX_SYSTEM_SERIES]:
            history = sorted(client.get_metric_history(run_id, name), key=lambda m: (m.step, m.timestamp))
            found.system[name] = ([m.step for m in history], [m.value for m in history])
        registered = folder.json("register", "registered.json") or {}
        if registered.get("registry") == "mlflow" and registered.get("version"):
            found.aliases = sorted(client.get_model_version(registered["name"], str(registered["version"])).aliases)
        return found
    except Exception as exc:  # an unreachable server or a deleted run: the report says so and goes on
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Tracked(reason=f"MLflow at {redact_url_credentials(uri)} could not be read: {redact_url_credentials(first)[:200]}")


def this_process(cwd: Path | None = None) -> Tracked:
    """What the run's own process knows without asking MLflow: the same environment tags tracking.py logs
    when a run starts (library versions, Python, host, git commit). For the report stage, inside the run."""
    from trainpipe.tracking.environment import environment_tags, git_info

    return Tracked(tags={**environment_tags(), **git_info(cwd or Path.cwd())}, source="of the run's own process")

