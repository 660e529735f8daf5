"""`trainpipe init` (a ready-to-run pipeline.yaml for a data file) and `trainpipe schema infer`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from trainpipe.cli.common import DebugOpt, JsonOpt, _execute

schema_app = typer.Typer(help="Data schemas.", no_args_is_help=True)


@schema_app.command("infer")
def schema_infer(
    data: str = typer.Argument(..., help="Data file, glob or URL."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
    debug: bool = DebugOpt,
) -> None:
    """Write a starting schema (dtypes, nullability, observed ranges, categories) as YAML."""

    def body(console: Console) -> None:
        from trainpipe.data.io import DataConfig, read_table
        from trainpipe.data.schema import infer_schema, schema_to_yaml
        from trainpipe.files import atomic_output, check_output

        if out:
            check_output(out, "schema.yaml")
        frame, _ = read_table(DataConfig(path=data, target="_"))
        text = schema_to_yaml(infer_schema(frame))
        if out:
            with atomic_output(out, "schema.yaml") as tmp:
                tmp.write_text(text)
            Console(stderr=True).print(f"wrote {out} ({len(frame.columns)} columns)")
        else:
            sys.stdout.write(text)
        return None

    _execute(body, False, debug)


def init(
    directory: Path = typer.Argument(..., help="Folder to write pipeline.yaml and schema.yaml into."),
    data: str = typer.Option(..., "--data", help="A CSV or Parquet file."),
    target: Optional[str] = typer.Option(None, "--target", help="The label column (every task but ranking)."),
    task: Optional[str] = typer.Option(None, "--task", help="binary, multiclass, regression (default: inferred) or ranking."),
    model: Optional[str] = typer.Option(None, "--model", help="xgboost, lightgbm, sklearn or torch_mlp (default: "
                                        "xgboost, else lightgbm, else sklearn: the first installed)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing pipeline.yaml."),
    user: Optional[str] = typer.Option(None, "--user", help="--task ranking: the user id column."),
    item: Optional[str] = typer.Option(None, "--item", help="--task ranking: the item id column."),
    time_col: Optional[str] = typer.Option(None, "--time", help="--task ranking: the timestamp column."),
    rating: Optional[str] = typer.Option(None, "--rating", help="--task ranking: the rating column."),
    positive_threshold: Optional[float] = typer.Option(None, "--positive-threshold",
                                                       help="--task ranking: ratings >= this are positives."),
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Write a ready-to-run, commented pipeline.yaml (with an inferred schema) for a data file."""

    def body(console: Console) -> dict:
        from trainpipe.errors import ConfigError
        from trainpipe.models import FAMILIES
        from trainpipe.tools.scaffold import scaffold

        if task == "ranking":  # an interactions table: scaffold_ranking in trainpipe/tools/scaffold.py
            from trainpipe.tools.scaffold import scaffold_ranking

            return scaffold_ranking(directory, data, user, item, time_col, rating, positive_threshold, force)
        if task is not None and task not in ("binary", "multiclass", "regression"):
            raise ConfigError(f"--task: expected binary, multiclass, regression or ranking, got {task!r}", key="task")
        if target is None:
            raise ConfigError("--target: required (the label column) unless --task ranking", key="--target")
        if model is not None and model not in FAMILIES:  # the tabular families (their classes hold init's defaults)
            raise ConfigError(f"--model: expected one of {', '.join(FAMILIES)}, got {model!r}", key="model.type")
        return scaffold(directory, data, target, task, model, force)

    def render(console: Console, doc: dict) -> None:
        if doc["task"] == "ranking":
            console.print(f"[green]wrote[/] {doc['pipeline']}\n  task ranking · model two_tower · {doc['rows']:,} rows · "
                          f"{doc['positives']:,} positives · {doc['users']:,} users · {doc['items']:,} items")
            console.print(f"next: [bold]trainpipe run {doc['pipeline']}[/]")
            return
        console.print(f"[green]wrote[/] {doc['pipeline']} and {doc['schema']}")
        console.print(f"  task {doc['task']} · model {doc['model']} · {doc['rows']:,} rows"
                      + (f" · id column {doc['id_columns'][0]}" if doc["id_columns"] else "")
                      + (f" · numbers-in-text columns {', '.join(doc['coerced'])}" if doc["coerced"] else ""))
        console.print(f"next: [bold]trainpipe run {doc['pipeline']}[/]")

    _execute(body, as_json, debug, render=render)
