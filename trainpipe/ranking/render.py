"""The ranking metrics table: the model next to each baseline on the same test users, and the lift."""

from __future__ import annotations

from rich.table import Table


def ranking_table(metrics: dict) -> Table:
    from trainpipe.render import _fmt

    baselines = metrics.get("baselines", {})
    lift = (metrics.get("lift") or {}).get("test", {})
    table = Table(title="Ranking metrics (test users; baselines on the same users and exclusions)")
    table.add_column("metric", no_wrap=True)
    for column in ("validation", "test", *(f"{b} (test)" for b in baselines), "lift vs popularity"):
        table.add_column(column, justify="right")
    for name, value in metrics["test"].items():
        if name == "users":
            continue
        table.add_row(name, _fmt(metrics["validation"].get(name)), _fmt(value),
                      *(_fmt(baselines[b]["test"].get(name)) for b in baselines),
                      _fmt(lift.get(f"lift_{name}")) if lift.get(f"lift_{name}") is not None else "")
    return table
