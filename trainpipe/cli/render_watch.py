"""The live view of `trainpipe runs watch` (one rich renderable per snapshot of pipeline/watch.py)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from trainpipe.cli.render import STATUS_STYLE
from trainpipe.stages.context import number

SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "error": "red"}
SYSTEM_SHOWN = (("cpu_utilization_percentage", "cpu", "%"), ("system_memory_usage_percentage", "memory", "%"))


def _progress_line(doc: dict[str, Any]) -> Text:
    live = doc.get("progress")
    if not live:
        return Text("")
    values = "  ".join(f"{k} {number(v)}" for k, v in (live.get("values") or {}).items())
    speed = f"  {live['rows_per_s']:,.0f} rows/s" if live.get("rows_per_s") else ""
    return Text(f"  {live.get('unit', 'epoch')} {live.get('iteration')}  {values}{speed}")


def _system_line(system: dict[str, float]) -> Text:
    parts = [f"{label} {system[key]:.0f}{unit}" for key, label, unit in SYSTEM_SHOWN if key in system]
    parts += [f"gpu{key.split('_')[1]} {value:.0f}%" for key, value in sorted(system.items())
              if key.startswith("gpu_") and key.endswith("_utilization_percentage")]
    return Text(("  resources: " + "  ".join(parts)) if parts else "")


def view(doc: dict[str, Any]) -> Group:
    status = doc["status"]
    head = Text.assemble((f"run {doc['run_id']}  ", "bold"), (status, STATUS_STYLE.get(status, "white")))
    if doc.get("stage"):
        head.append(f"  stage {doc['stage']}" + (f" ({doc['stage_seconds']:.0f} s)" if doc.get("stage_seconds") else ""))
    if status != "running":
        head.append(f"  exit code {doc.get('exit_code')}")
    stages = Text("  " + "  ".join(f"{name} {s['status']}" for name, s in doc["stages"].items()), style="dim")
    parts: list[Any] = [head, stages, _progress_line(doc), _system_line(doc.get("system") or {})]
    if doc.get("error"):
        parts.append(Text(f"  error: {doc['error']}", style="red"))
    if doc.get("events"):
        table = Table(show_header=False, box=None, padding=(0, 1))
        for event in doc["events"]:
            table.add_row(Text(event.get("time", "")[11:19], style="dim"),
                          Text(event.get("severity", ""), style=SEVERITY_STYLE.get(event.get("severity", ""), "")),
                          Text(event.get("summary", "")))
        parts.append(table)
    return Group(*parts)
