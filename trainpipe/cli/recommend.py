"""`trainpipe recommend`: top-K items for users from a packaged ranking model (run id, folder or registry)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console

if TYPE_CHECKING:
    from trainpipe.registry.serving import Recommender

from trainpipe.cli.common import DebugOpt, JsonOpt, StoreOpt, TrackingUriOpt, _execute, _reachable, _store


def load_recommender(model_uri: str, store: Optional[str], tracking_uri: Optional[str]) -> tuple[Recommender, str]:
    """(Recommender, label) of a verified package; a tabular model is refused in one line."""
    from trainpipe.errors import RegistryError
    from trainpipe.registry.predict import load_packaged, resolve

    path, label = resolve(model_uri, _store(None, store), _reachable(tracking_uri))
    model = load_packaged(path)
    if not hasattr(model, "recommender"):
        raise RegistryError(f"model {label} is not a ranking model; use `trainpipe predict` for it", key="model")
    return model.recommender, label


def recommend_users(recommender: Recommender, label: str, users: list[str], k: int, include_seen: bool) -> dict:
    frame = recommender.recommend(users, k=k, exclude_seen=not include_seen)
    out = []
    for user in dict.fromkeys(users):
        rows = frame[frame["user"] == user]
        out.append({"user": user, "source": rows["source"].iloc[0] if len(rows) else None,
                    "items": [{"rank": int(r), "item": i, "score": float(s)}
                              for r, i, s in zip(rows["rank"], rows["item"], rows["score"])]})
    return {"model": label, "k": k, "recommendations": out}


def recommend_file(recommender: Recommender, label: str, users_file: str, column: str, out: Path, k: int,
                   include_seen: bool) -> dict:
    import time

    from trainpipe.data.io import DataConfig, read_table
    from trainpipe.errors import DataError
    from trainpipe.files import atomic_output

    frame, _ = read_table(DataConfig(path=users_file))
    if column not in frame.columns:
        raise DataError(f"--user-column: column {column!r} is not in {users_file} (columns: "
                        f"{', '.join(map(str, frame.columns[:12]))})", key="--user-column")
    started = time.perf_counter()
    result = recommender.recommend(frame[column], k=k, exclude_seen=not include_seen, features=frame)
    with atomic_output(out, "recommendations.parquet") as tmp:
        result.to_parquet(tmp, index=False)
    seconds = time.perf_counter() - started
    return {"model": label, "out": str(out), "users": int(frame[column].nunique()), "rows": len(result), "k": k,
            "seconds": seconds, "users_per_s": len(frame) / max(seconds, 1e-9)}


def recommend(
    model_uri: str = typer.Argument(..., help="models:/NAME@alias, NAME/VERSION, a run id or a model folder."),
    user: Optional[list[str]] = typer.Option(None, "--user", help="User id (repeatable)."),
    users: Optional[str] = typer.Option(None, "--users", help="Batch form: CSV/Parquet file with a column of user ids "
                                        "(and, for new users, their feature columns)."),
    user_column: Optional[str] = typer.Option(None, "--user-column", help="Column of --users holding the ids "
                                              "(default: the model's user column, else 'user')."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Batch form: Parquet file to write (user, rank, item, "
                                       "score, source)."),
    k: int = typer.Option(10, "--k", help="Items per user."),
    include_seen: bool = typer.Option(False, "--include-seen", help="Also recommend items the user already interacted with."),
    store: Optional[str] = StoreOpt,
    tracking_uri: Optional[str] = TrackingUriOpt,
    as_json: bool = JsonOpt,
    debug: bool = DebugOpt,
) -> None:
    """Top-K items for users, from a packaged ranking model (checksum-verified)."""

    def body(console: Console) -> dict:
        from trainpipe.errors import ConfigError

        if k < 1:
            raise ConfigError(f"--k: must be at least 1 (got {k})", key="--k")
        if bool(user) == bool(users):
            raise ConfigError("recommend: give --user ID (repeatable) or --users FILE --out OUT.parquet", key="--user")
        if users and out is None:
            raise ConfigError("--out: the batch form (--users FILE) writes a Parquet file; pass --out", key="--out")
        if out is not None:
            from trainpipe.files import check_output

            check_output(out, "recommendations.parquet")  # before the model loads
        recommender, label = load_recommender(model_uri, store, tracking_uri)
        if users:
            assert out is not None  # checked above
            column = user_column or recommender.meta.get("user_column") or "user"
            return recommend_file(recommender, label, users, column, out, k, include_seen)
        return recommend_users(recommender, label, list(user or []), k, include_seen)

    def render(console: Console, doc: dict) -> None:
        from rich.table import Table

        if "out" in doc:
            console.print(f"[green]wrote[/] {doc['out']}: {doc['rows']:,} rows for {doc['users']:,} users in "
                          f"{doc['seconds']:.2f}s with {doc['model']}")
            return
        for entry in doc["recommendations"]:
            table = Table(title=f"user {entry['user']} · top {doc['k']} · {entry['source']} · {doc['model']}")
            for column in ("rank", "item", "score"):
                table.add_column(column, justify="right")
            for row in entry["items"]:
                table.add_row(str(row["rank"]), str(row["item"]), f"{row['score']:.4f}")
            console.print(table)

    _execute(body, as_json, debug, render=render)
