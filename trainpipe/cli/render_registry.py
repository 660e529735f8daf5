"""Rich tables for gates and the registry (the --json path never comes here)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def gate_table(decision: dict) -> Table:
    table = Table(title=f"Gate: {'[green]passed[/]' if decision.get('passed') else '[red]failed[/]'}")
    for col in ("", "check", "value", "limit", "reason"):
        table.add_column(col)
    for c in decision.get("checks", []):
        table.add_row("[green]✓[/]" if c["passed"] else "[red]✗[/]", c["check"], _fmt(c["value"]), _fmt(c["limit"]),
                      c["reason"])
    champion = decision.get("champion") or {}
    if champion.get("status") == "compared" and champion.get("ci"):
        ci = champion["ci"]
        table.caption = (f"champion v{champion['champion_version']}: {champion['metric']} difference "
                         f"{champion['difference']:+.4g}, {int(ci['confidence'] * 100)}% paired bootstrap CI "
                         f"[{ci['low']:+.4g}, {ci['high']:+.4g}] ({ci['resamples']} resamples, seed {ci['seed']})")
    elif champion.get("reason"):
        table.caption = f"champion: {champion['reason']}"
    return table


def print_gate(console: Console, decision: dict) -> None:
    """The decision as a table, or one line when nothing but the (skipped) champion comparison ran."""
    if decision.get("already_registered"):  # a rerun of a registered run: the decision shown is the earlier one
        console.print(f"[bold]gate[/] {decision['already_registered']['reason']}")
    if decision.get("checks"):
        console.print(gate_table(decision))
        return
    champion = (decision.get("champion") or {}).get("reason", "")
    console.print(f"[bold]gate[/] {'[green]passed[/]' if decision.get('passed') else '[red]failed[/]'}: no thresholds "
                  f"or slices configured" + (f"; {champion}" if champion else ""))


def registered_line(console: Console, record: dict) -> None:
    if record.get("registry") != "mlflow":
        console.print(f"[bold]model[/] packaged at {record['package']} (registry off)")
        return
    console.print(f"[bold]registered[/] {record['name']} version {record['version']} "
                  f"[cyan]@{' @'.join(record['aliases'])}[/]" + (f"  [yellow]{record['note']}[/]" if record.get("note") else ""))


def versions_table(name: str, rows: list[dict]) -> Table:
    table = Table(title=f"Model {name}")
    for col in ("version", "aliases", "created", "run", "metric", "test", "gate"):
        table.add_column(col, justify="right" if col in ("version", "test") else "left")
    for r in rows:
        table.add_row(r["version"], " ".join(f"@{a}" for a in r["aliases"]), r["created"], r["run_id"] or "—",
                      r["metric"] or "—", _fmt(r["test"]), r["gate"] or "—")
    return table


def models_table(rows: list[dict]) -> Table:
    table = Table(title="Registered models")
    for col in ("name", "aliases", "latest"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], " ".join(f"@{a}→v{v}" for a, v in sorted(r["aliases"].items())), _fmt(r["latest"]))
    return table


def describe(console: Console, doc: dict, card: bool) -> None:
    console.print(f"[bold]{doc['name']}[/] version {doc['version']} "
                  + " ".join(f"[cyan]@{a}[/]" for a in doc["aliases"]) + f"  created {doc['created']}")
    console.print(f"[bold]source[/] {doc['source']}  [bold]MLflow run[/] {doc['mlflow_run_id']}")
    table = Table(title="Lineage")
    table.add_column("tag")
    table.add_column("value")
    for key, value in doc["tags"].items():
        table.add_row(key, value)
    console.print(table)
    if card:
        from rich.markdown import Markdown

        console.print(Markdown(doc["card"] or "_no model card_"))


def history_table(name: str, entries: list[dict]) -> Table:
    table = Table(title=f"Alias history of {name}")
    for col in ("when", "alias", "from", "to", "action", "reason", "who", "run"):
        table.add_column(col)
    for e in entries:
        table.add_row(e["at"], f"@{e['alias']}", _fmt(e["from"]), _fmt(e["to"]), e["action"], e["reason"],
                      e["actor"], e.get("run") or "—")
    return table


def moved_line(console: Console, entry: dict, name: str) -> None:
    # the reason alone when it only repeats the action (`models rollback` without --reason records "rollback")
    why = entry["action"] if entry["reason"] == entry["action"] else f"{entry['action']}: {entry['reason']}"
    console.print(f"[green]{name}[/] @{entry['alias']}: {_fmt(entry['from'])} → [bold]{_fmt(entry['to'])}[/] ({why})")
