"""`trainpipe runs list/compare`: read runs back from the MLflow store."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from trainpipe.errors import RunError
from trainpipe.store import Store
from trainpipe.evaluation.metrics import LOWER_IS_BETTER, PRIMARY
from trainpipe.tracking.tracker import HISTORY_PREFIX

RUN_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # trainpipe run ids and MLflow's hex run ids


def _client(uri: str) -> tuple[Any, dict[str, str]]:
    """(client, {experiment id: name}); a store MLflow cannot open is one line, not MLflow's exception."""
    import logging

    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise RunError(f"--store: no MLflow store at {uri.removeprefix('sqlite:///')} (run a pipeline first, or pass "
                       "--store / --tracking-uri)", key="store")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        client = MlflowClient(tracking_uri=uri)
        return client, {e.experiment_id: e.name for e in client.search_experiments()}
    except Exception as exc:  # noqa: BLE001 - MlflowException, or SQLAlchemy's own for a file that is no database
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"cannot read the MLflow store at {uri} (--store / --tracking-uri): {detail}",
                       key="--tracking-uri") from None


def liveness(run: Any) -> str | None:
    """For a RUNNING MLflow run: `alive`, `dead` or `idle` (pipeline/liveness.py), from its run folder when that
    is on this machine (exact), else from its heartbeat tag. None for a run that ended."""
    import json

    from trainpipe.pipeline.liveness import judge, judge_tags

    if run.info.status != "RUNNING":
        return None
    run_dir = run.data.tags.get("trainpipe.run_dir")
    meta_path = Path(run_dir) / "run.json" if run_dir else None
    if meta_path is not None and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = None
        if meta is not None and meta.get("status") == "running":
            return judge(meta).state
    return judge_tags(run.data.tags).state


def _row(run: Any, experiments: dict) -> dict:
    tags, metrics = run.data.tags, run.data.metrics
    task = tags.get("task")
    primary = tags.get("trainpipe.primary_metric") or PRIMARY.get(task, (None,))[0]
    return {
        "run_id": tags.get("trainpipe.run_id"), "mlflow_run_id": run.info.run_id,
        "experiment": experiments.get(run.info.experiment_id, run.info.experiment_id),
        "status": run.info.status, "liveness": liveness(run), "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.start_time / 1000)),
        "model": tags.get("model.type"), "task": task, "primary_metric": primary,
        "validation": metrics.get(f"validation_{primary}"), "test": metrics.get(f"test_{primary}"),
        "cost_usd": metrics.get("cost_usd"), "duration_s": metrics.get("duration_s"), "cpu_s": metrics.get("cpu_s"),
        "error": tags.get("trainpipe.error"),
    }


def cost_per_point(cost: float | None, metric: str | None, value: float | None) -> float | None:
    """USD per point (0.01) of a higher-is-better metric on a 0..1 scale (AUC, F1, recall@K): what one point
    of the headline metric cost. None where that means nothing: no cost or value, an error metric (RMSE, log
    loss: lower is better), a value outside (0, 1]."""
    if cost is None or value is None or metric is None or metric.split("_at_")[0] in LOWER_IS_BETTER:
        return None
    return cost / (value * 100) if 0 < value <= 1 else None


def list_runs(uri: str, experiment: str | None = None, limit: int = 20, store: Store | None = None) -> list[dict]:
    """The newest `limit` runs of the MLflow store at `uri`, and with `store` also its runs that are not in MLflow
    yet: a run's MLflow calls wait until its train or tune stage starts (pipeline/tracking.py), so a run in its
    data stages exists only as a run folder."""
    found = _folder_only_runs(store) if store is not None else []
    pending = [r for r in found if experiment is None or r["experiment"] == experiment]
    if found and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return pending[:limit]  # a fresh store: its first run has not reached MLflow yet
    client, experiments = _client(uri)
    if experiment:
        ids = [i for i, name in experiments.items() if name == experiment]
        if not ids and not pending:
            raise RunError(f"--experiment: no experiment named {experiment!r} (have: {', '.join(sorted(experiments.values()))})",
                           key="experiment")
    else:
        ids = list(experiments)
    rows = [_row(r, experiments) for r in client.search_runs(ids, order_by=["attributes.start_time DESC"],
                                                              max_results=limit)] if ids else []
    listed = {r["run_id"] for r in rows}
    pending = [p for p in pending if p["run_id"] not in listed and not _in_mlflow(client, ids, p["run_id"])]
    return (pending + rows)[:limit]


def _folder_only_runs(store: Store) -> list[dict]:
    """Run folders that say running and have no MLflow run recorded yet, newest first, as `_row`s."""
    from trainpipe.pipeline.liveness import judge
    from trainpipe.pipeline.recovery import run_folders

    rows = []
    for run_id, run_dir, meta in run_folders(store):
        if meta.get("status") != "running" or meta.get("mlflow_run_id"):
            continue
        config = _folder_config(run_dir)
        name = (config.get("tracking") or {}).get("experiment") or config.get("name")
        model, task = (config.get("model") or {}).get("type"), config.get("task")
        started = meta.get("created_at", "")
        rows.append({"run_id": run_id, "mlflow_run_id": None, "experiment": name, "status": "RUNNING",
                     "liveness": judge(meta).state, "started": started[:16].replace("T", " "), "model": model,
                     "task": task, "primary_metric": PRIMARY.get(task, (None,))[0] if task else None,
                     "validation": None, "test": None, "cost_usd": None, "duration_s": None, "cpu_s": None,
                     "error": None, "_sort": started})
    rows.sort(key=lambda r: r.pop("_sort"), reverse=True)
    return rows


def _folder_config(run_dir: Path) -> dict:
    """The run's config.yaml as plain data ({} if it cannot be read: the listing still shows the run)."""
    import yaml

    try:
        loaded = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _in_mlflow(client: Any, experiment_ids: list[str], run_id: str) -> bool:
    """An older run beyond the listing's limit, or one whose MLflow id run.json has not recorded yet."""
    if not experiment_ids or not RUN_REF.fullmatch(run_id):
        return False
    return bool(client.search_runs(experiment_ids, filter_string=f"tags.`trainpipe.run_id` = '{run_id}'",
                                   max_results=1))


def _find(client: Any, ref: str, experiment_ids: list[str]) -> Any:
    if not RUN_REF.fullmatch(ref):  # it would be pasted into an MLflow filter string
        raise RunError(f"runs compare: {ref!r} is not a run id (letters, digits, '.', '_' and '-' only)", key="run")
    found = client.search_runs(experiment_ids, filter_string=f"tags.`trainpipe.run_id` = '{ref}'", max_results=1)
    if found:
        return found[0]
    try:
        return client.get_run(ref)
    except Exception as exc:
        raise RunError(f"runs compare: no run {ref!r} (neither a trainpipe run id nor an MLflow run id)", key="run") from exc


def compare_runs(uri: str, refs: list[str]) -> dict:
    if len(refs) < 2:
        raise RunError("runs compare: give at least two run ids", key="run")
    client, experiments = _client(uri)
    experiment_ids = list(experiments)
    runs = [_find(client, ref, experiment_ids) for ref in refs]
    labels = [r.data.tags.get("trainpipe.run_id", r.info.run_id[:12]) for r in runs]
    param_names = sorted(set().union(*(r.data.params for r in runs)))
    differ = {name: [r.data.params.get(name) for r in runs] for name in param_names
              if len({r.data.params.get(name) for r in runs}) > 1}
    # Final metrics only: a `history/` key's latest value is just the last iteration of a curve.
    metric_names = sorted({n for r in runs for n in r.data.metrics if not n.startswith(HISTORY_PREFIX)},
                          key=lambda n: (not n.startswith(("validation_", "test_")), n))
    metrics = {name: [r.data.metrics.get(name) for r in runs] for name in metric_names}
    rows = [_row(r, experiments) for r in runs]
    return {"runs": [{"label": label, "run_id": r.data.tags.get("trainpipe.run_id"), "mlflow_run_id": r.info.run_id,
                      "status": r.info.status, "task": r.data.tags.get("task"), "model": r.data.tags.get("model.type"),
                      "run_dir": r.data.tags.get("trainpipe.run_dir"), "primary_metric": row["primary_metric"],
                      "cost_usd": row["cost_usd"],
                      "cost_per_point": cost_per_point(row["cost_usd"], row["primary_metric"], row["test"])}
                     for label, r, row in zip(labels, runs, rows)],
            "params_that_differ": differ, "metrics": metrics}
