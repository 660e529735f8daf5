"""Rich rendering of results for people (the --json path never comes here)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from trainpipe.stages.context import number as _fmt

STATUS_STYLE = {"completed": "green", "reused": "cyan", "failed": "red", "killed": "red", "pending": "dim",
                "running": "yellow"}


def stage_line(console: Console, manifest: dict) -> None:
    from trainpipe.pipeline.stages import SPECS

    status = manifest["status"]
    s = manifest.get("summary", {})
    spec = SPECS.get(manifest["stage"])
    notes = spec.summary_line(s) if spec is not None else s.get("line", "")  # each stage words its own line
    extra = f" (from run {manifest['reused_from']})" if status == "reused" and manifest.get("reused_from") != manifest.get("run_id") else ""
    if manifest.get("recomputed_because"):  # a cache entry that failed its content check
        extra += f" (not reused: {manifest['recomputed_because']})"
    secs = "" if status == "reused" else f"{manifest.get('seconds', 0):.2f}s"
    console.print(f"  [{STATUS_STYLE.get(status, 'white')}]{'✓' if status != 'failed' else '✗'} {manifest['stage']:<9}[/] "
                  f"{secs:>7}  {notes}[dim]{extra}[/]")
    for warning in s.get("warning_messages", []):  # validate's data checks, split sizes, empty feature columns
        console.print(f"      [yellow]warning:[/] {warning}")


def metrics_table(metrics: dict) -> Table:
    table = Table(title="Metrics", show_lines=False)
    table.add_column("metric")
    splits = list(metrics)
    for split in splits:
        table.add_column(split, justify="right")
    names = list(dict.fromkeys(k for split in splits for k in metrics[split]))
    for name in names:
        table.add_row(name, *(_fmt(metrics[split].get(name)) for split in splits))
    return table


def ranking_table(metrics: dict) -> Table:
    """Task ranking: the model next to each baseline on the same test users, and the lift."""
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
    beaten = (metrics.get("beaten_by") or {}).get("validation") or []
    if beaten:  # the model loses to a baseline where it was tuned: say so under the table
        table.caption = (f"[yellow]{', '.join(row['baseline'] for row in beaten)} beat(s) the model on validation "
                         "(docs/ranking.md: Defaults on real data)[/]")
    return table


def run_summary(console: Console, summary: dict) -> None:
    if summary.get("metrics", {}).get("baselines") is not None:  # task ranking
        console.print(ranking_table(summary["metrics"]))
    elif summary.get("metrics"):
        console.print(metrics_table(summary["metrics"]))
    if summary.get("gate"):
        from trainpipe.cli.render_registry import print_gate, registered_line

        print_gate(console, summary["gate"])
        if summary.get("registered"):
            registered_line(console, summary["registered"])
    console.print(f"[bold]run[/] {summary['run_id']}  [bold]status[/] "
                  f"[{STATUS_STYLE.get(summary['status'], 'white')}]{summary['status']}[/]")
    console.print(f"[bold]artifacts[/] {summary['run_dir']}")
    if summary.get("tracking_uri"):
        console.print(f"[bold]MLflow run[/] {summary.get('mlflow_run_id')}")
        if summary["tracking_uri"].startswith("sqlite:"):
            console.print(f"[bold]open the UI[/] mlflow ui --backend-store-uri {summary['tracking_uri']}")
        else:
            console.print(f"[bold]tracking server[/] {summary['tracking_uri']}")


def validation_report(console: Console, report: dict) -> None:
    ok = not report["errors"]
    console.print(f"[{'green' if ok else 'red'}]{'✓ data checks passed' if ok else '✗ data checks failed'}[/] "
                  f"· {report.get('rows', 0):,} rows · {report.get('columns_checked', 0)} schema columns")
    for err in report["errors"]:
        console.print(f"  [red]error[/] {err['message']}")
    for warning in report["warnings"]:
        console.print(f"  [yellow]warning[/] {warning['message']}")


def runs_table(rows: list[dict]) -> Table:
    """Newest first, narrow enough for 80 columns: the run id already says when it started, and the
    headline metric's name goes in the title when every run shares it."""
    from rich import box

    metrics = {r.get("primary_metric") for r in rows} - {None}
    metric = metrics.pop() if len(metrics) == 1 else None
    experiments = {r["experiment"] for r in rows}
    experiment = experiments.pop() if len(experiments) == 1 else None  # then named in the title: room for cost
    title = " · ".join(["Runs"] + ([f"experiment {experiment}"] if experiment else []) + ([metric] if metric else []))
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("run",) + (() if experiment else ("experiment",)) + ("status", "model") + (() if metric else ("metric",)):
        table.add_column(name, no_wrap=name != "experiment", overflow="fold", min_width=10 if name == "experiment" else None)
    table.add_column("validation", justify="right", no_wrap=True)
    table.add_column("test", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    for r in rows:
        status = "[red]dead[/] (runs gc)" if r.get("liveness") == "dead" else r["status"].lower()
        cells = [r["run_id"] or r["mlflow_run_id"][:12], *([] if experiment else [r["experiment"]]), status,
                 r.get("model") or "—"]
        if metric is None:
            cells.append(r.get("primary_metric") or "—")
        table.add_row(*cells, _fmt(r.get("validation")), _fmt(r.get("test")), _cost(r.get("cost_usd")))
    return table


def _cost(usd: float | None) -> str:
    if usd is None:
        return "—"
    return f"${usd:.6f}" if usd < 0.01 else f"${usd:.4f}" if usd < 100 else f"${usd:,.0f}"


def compare_tables(doc: dict) -> list[Table]:
    runs = doc["runs"]
    params = Table(title="Parameters that differ")
    params.add_column("param")
    for r in runs:
        params.add_column(r["label"])
    for name, values in doc["params_that_differ"].items():
        params.add_row(name, *(_fmt(v) for v in values))
    metrics = Table(title="Metrics")
    metrics.add_column("metric")
    for r in runs:
        metrics.add_column(r["label"], justify="right")
    for name, values in doc["metrics"].items():
        metrics.add_row(name, *(_fmt(v) for v in values))
    cost = Table(title="Cost (USD per point: cost_usd / (100 × the primary test metric))")
    cost.add_column("")
    for r in runs:
        cost.add_column(r["label"], justify="right")
    cost.add_row("cost", *(_cost(r.get("cost_usd")) for r in runs))
    cost.add_row("per point of " + ("/".join(sorted({str(r.get("primary_metric")) for r in runs}))),
                 *("—" if r.get("cost_per_point") is None else f"${r['cost_per_point']:.6f}" for r in runs))
    return [params, metrics, cost]


def gc_report(console: Console, doc: dict) -> None:
    """`runs gc`: one line per run marked (or that would be), then the count."""
    verb = "would mark" if doc["dry_run"] else "marked"
    for r in doc["runs"]:
        if r["action"] == "skipped":
            console.print(f"[dim]skipped[/] {r['run_id']}: {r['detail']}")
            continue
        extra = f"; removed {', '.join(r['removed'])}" if r.get("removed") else ""
        mlflow = f"; MLflow {', '.join(i[:12] for i in r['mlflow_killed'])} KILLED" if r.get("mlflow_killed") else ""
        console.print(f"{verb} [bold]{r['run_id']}[/] killed: {r['reason']}{mlflow}{extra}")
    for r in doc["mlflow"]:
        console.print(f"{r['action']} {r['run_id']} ({r['mlflow_run_id'][:12]}): {r['reason']}")
    console.print(f"{doc['marked']} run(s) {verb}" + (" (dry run: nothing changed)" if doc["dry_run"] else ""))
