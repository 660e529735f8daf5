"""`trainpipe runs list/compare`: read runs back from the MLflow store."""

from __future__ import annotations

import time

from trainpipe.errors import RunError
from trainpipe.evaluation.metrics import PRIMARY
from trainpipe.tracking import HISTORY_PREFIX


def _client(uri: str):
    import logging
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise RunError(f"--store: no MLflow store at {uri.removeprefix('sqlite:///')} (run a pipeline first, or pass "
                       "--store / --tracking-uri)", key="store")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def _row(run, experiments: dict) -> dict:
    tags, metrics = run.data.tags, run.data.metrics
    task = tags.get("task")
    primary = tags.get("trainpipe.primary_metric") or PRIMARY.get(task, (None,))[0]
    return {
        "run_id": tags.get("trainpipe.run_id"), "mlflow_run_id": run.info.run_id,
        "experiment": experiments.get(run.info.experiment_id, run.info.experiment_id),
        "status": run.info.status, "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.info.start_time / 1000)),
        "model": tags.get("model.type"), "task": task, "primary_metric": primary,
        "validation": metrics.get(f"validation_{primary}"), "test": metrics.get(f"test_{primary}"),
        "error": tags.get("trainpipe.error"),
    }


def list_runs(uri: str, experiment: str | None = None, limit: int = 20) -> list[dict]:
    client = _client(uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if experiment:
        ids = [i for i, name in experiments.items() if name == experiment]
        if not ids:
            raise RunError(f"--experiment: no experiment named {experiment!r} (have: {', '.join(sorted(experiments.values()))})",
                           key="experiment")
    else:
        ids = list(experiments)
    if not ids:
        return []
    runs = client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=limit)
    return [_row(r, experiments) for r in runs]


def _find(client, ref: str, experiment_ids: list[str]):
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
    client = _client(uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs = [_find(client, ref, experiment_ids) for ref in refs]
    labels = [r.data.tags.get("trainpipe.run_id", r.info.run_id[:12]) for r in runs]
    param_names = sorted(set().union(*(r.data.params for r in runs)))
    differ = {name: [r.data.params.get(name) for r in runs] for name in param_names
              if len({r.data.params.get(name) for r in runs}) > 1}
    # Final metrics only: a `history/` key's latest value is just the last iteration of a curve.
    metric_names = sorted({n for r in runs for n in r.data.metrics if not n.startswith(HISTORY_PREFIX)},
                          key=lambda n: (not n.startswith(("validation_", "test_")), n))
    metrics = {name: [r.data.metrics.get(name) for r in runs] for name in metric_names}
    return {"runs": [{"label": label, "run_id": r.data.tags.get("trainpipe.run_id"), "mlflow_run_id": r.info.run_id,
                      "status": r.info.status, "task": r.data.tags.get("task"), "model": r.data.tags.get("model.type"),
                      "run_dir": r.data.tags.get("trainpipe.run_dir")} for label, r in zip(labels, runs)],
            "params_that_differ": differ, "metrics": metrics}
