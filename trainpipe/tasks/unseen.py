"""Which of this run's test rows the champion never saw: the champion comparison of tabular tasks scores only those.

A run whose split differs from the champion's (another split seed, strategy or data) holds out other rows: many of
its test rows were in the champion's training or validation split, and the champion scored on them looks better
than it is (a comparable challenger then fails the gate). The champion's registered version carries its split
identity and run id (stages/register.py lineage tags), and its run folder, while this store keeps it, holds its
split: the same data (same ingest fingerprint) means the same row positions; with `data.id_column` set, its
training and validation id values (SEEN_IDS, written by the split stage) match by value. Rows that cannot be
matched (its run folder gone, other data without an id column) are all compared, with a warning saying so.

The common case, the same split as the champion's, reads nothing and compares every test row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from trainpipe.tasks.base import ChampionLineage, RunView

SEEN_IDS = "seen_ids.parquet"  # split stage: the data.id_column values of the training and validation rows


def write_seen_ids(stage_dir: Path, id_column: str | None, ids: pd.Series | np.ndarray | None) -> None:
    """Record the id values the model will train and validate on (nothing without data.id_column)."""
    if id_column is None or ids is None:
        return
    pd.DataFrame({id_column: np.asarray(ids)}).to_parquet(stage_dir / SEEN_IDS, index=False)


def same_split(run: RunView, lineage: ChampionLineage) -> bool:
    return lineage.split_hash is not None and lineage.split_hash == run.manifest("split").get("identity")


def rows_record(total: int, keep: np.ndarray | None, basis: str, reason: str, warning: str | None = None) -> dict:
    """What decision.json records about the rows compared (keep None: all of them)."""
    compared = total if keep is None else int(keep.sum())
    record = {"test_rows": total, "compared": compared, "excluded": total - compared, "basis": basis, "reason": reason}
    if warning:
        record["warning"] = warning
    return record


def champion_split_dir(lineage: ChampionLineage) -> Path | None:
    """The champion's split folder in this store, if it is the split the champion was registered with."""
    if lineage.run_dir is None:
        return None
    folder = lineage.run_dir / "split"
    try:
        identity = json.loads((folder / "manifest.json").read_text()).get("identity")
    except (OSError, ValueError):
        return None
    if lineage.split_hash is not None and identity != lineage.split_hash:  # a run id used again for another run
        return None
    return folder if (folder / "split.npz").exists() else None


def ingest_identity(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "ingest" / "manifest.json").read_text()).get("identity")
    except (OSError, ValueError):
        return None


def unseen_test_rows(run: RunView, lineage: ChampionLineage, id_column: str | None,
                     test_ids: Callable[[], pd.Series]) -> tuple[np.ndarray | None, dict]:
    """(mask over this run's test rows, in split.npz order, of the rows the champion neither trained nor validated
    on, or None: compare all; the record of which rows and why). `test_ids` gives this run's test id values (read
    only when matching by id)."""
    with np.load(run.upstream("split") / "split.npz") as parts:
        test = parts["test"]
    total = len(test)
    who = f"champion v{lineage.version}" + (f" (run {lineage.run_id})" if lineage.run_id else "")
    folder = champion_split_dir(lineage)
    if folder is None:
        where = ("its run folder is not in this store" if lineage.run_id else "its version has no trainpipe.run_id tag")
        return None, unmatched(total, who, where)
    ours = run.manifest("ingest").get("identity")
    theirs = lineage.data_fingerprint or ingest_identity(folder.parent)
    if ours is not None and ours == theirs:
        with np.load(folder / "split.npz") as parts:
            seen = np.concatenate([parts["train"], parts["validation"]])
        keep = ~np.isin(test, seen)
        return keep, rows_record(total, keep, "row positions", f"{who} trained on the same data (fingerprint "
                                 f"{str(ours)[:12]}) with another split: its training and validation rows are left out")
    if id_column is not None and (folder / SEEN_IDS).exists():
        seen_ids = pd.read_parquet(folder / SEEN_IDS)
        if id_column in seen_ids.columns:
            known = pd.Index(seen_ids[id_column].astype(str).unique())
            keep = ~np.asarray(pd.Series(test_ids()).astype(str).isin(known))
            return keep, rows_record(total, keep, "id values", f"{who} trained on other data: test rows whose "
                                     f"data.id_column {id_column!r} value was in its training or validation split "
                                     "are left out")
    how = ("data.id_column is not set" if id_column is None
           else f"its run recorded no {id_column!r} values (data.id_column was not set then)")
    return None, unmatched(total, who, f"it was trained on other data (fingerprint {str(theirs)[:12]}, this run's "
                                       f"{str(ours)[:12]}) and {how}")


def unmatched(total: int, who: str, why: str) -> dict:
    warning = (f"the {who} may have trained on some of these {total} test rows (its split differs from this run's "
               f"and {why}): its score may be flattered")
    return rows_record(total, None, "unmatched", "all test rows compared: the rows the champion trained on cannot "
                       "be told apart", warning)


def seen_interactions(lineage: ChampionLineage, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray | str:
    """Task ranking: a mask over the given (user id, item id) test interactions of those in the champion's training
    or validation split, matched by id values in its run folder (validate's interactions, split's positions), or
    why they cannot be told."""
    folder = champion_split_dir(lineage)
    if folder is None or not (folder.parent / "validate" / "interactions.npz").exists():
        return ("its run folder is not in this store" if lineage.run_id else "its version has no trainpipe.run_id tag")
    from trainpipe.data.interactions import Interactions

    theirs = Interactions.load(folder.parent / "validate")
    with np.load(folder / "split.npz") as parts:
        seen = np.concatenate([parts["train"], parts["validation"]])
    pairs = pd.DataFrame({"u": theirs.user_ids[theirs.user[seen]].astype(str),
                          "i": theirs.item_ids[theirs.item[seen]].astype(str)}).drop_duplicates()
    ours = pd.DataFrame({"u": np.asarray(user_ids).astype(str), "i": np.asarray(item_ids).astype(str)})
    return ours.merge(pairs, on=["u", "i"], how="left", indicator=True)["_merge"].eq("both").to_numpy()
