"""gate: may this model be registered? Test size, thresholds, slices and the current champion, one decision.

The champion is scored by its own packaged pyfunc (its own preprocessing) on this run's raw test
rows, so both models are judged on exactly the same rows. No champion yet: the comparison is
skipped and the decision says so. A champion whose package is broken (changed files, files gone)
fails the gate with the commands that repair the registry. A failed gate raises GateFailed (exit 3);
its decision.json stays in `gate.failed/` and is logged to MLflow, and register never runs.

A run that already registered a version (a resume or a rerun of a finished run) is not judged
again: its earlier decision stands, so register can complete that same version and nothing else.
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np

from trainpipe.errors import ConfigError, GateFailed, RegistryError
from trainpipe.evaluation import gates as g
from trainpipe.evaluation.metrics import primary_metric
from trainpipe.registry.client import Registry, model_name, registry_enabled
from trainpipe.stages import raw_rows


def champion_scores(path, frame, task: str, classes: list | None) -> tuple[np.ndarray | None, str | None]:
    """The champion's scores through the public pyfunc interface, aligned with this run's classes."""
    import warnings

    import mlflow.pyfunc

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = mlflow.pyfunc.load_model(str(path))
    except Exception as exc:  # intact files that this environment cannot load (e.g. a missing library)
        return None, f"the champion cannot be loaded: {str(exc).strip().splitlines()[0][:300]}"
    wanted_inputs = model.metadata.get_input_schema().input_names()
    missing = [c for c in wanted_inputs if c not in frame.columns]
    if missing:
        return None, f"the champion needs column(s) {', '.join(map(repr, missing))} that this data lacks"
    try:
        out = model.predict(frame[wanted_inputs])
    except Exception as exc:  # e.g. a column whose type changed since the champion was trained
        return None, f"the champion cannot score this run's test rows: {str(exc).strip().splitlines()[0][:300]}"
    if task == "regression":
        return np.asarray(out["prediction"], dtype=np.float64), None
    wanted = [f"proba_{c}" for c in classes]
    missing = [c for c in wanted if c not in out.columns]
    if missing:
        return None, f"the champion predicts other classes than this run ({', '.join(missing)} missing)"
    return out[wanted].to_numpy(dtype=np.float64), None


def run(ctx) -> dict:
    earlier = earlier_decision(ctx)
    if earlier is not None:
        return earlier
    if ctx.config.task == "ranking":  # the model and its baselines over the whole catalogue
        from trainpipe.ranking import evaluate as ranking

        return ranking.gate(ctx)
    config, gates = ctx.config, ctx.config.gates
    task, threshold = config.task, config.evaluation.threshold
    metrics = ctx.manifest("evaluate")["metrics"]
    info = json.loads((ctx.upstream("features") / "features.json").read_text())
    classes = info["labels"]["classes"]
    y = np.load(ctx.upstream("features") / "y_test.npy")
    scores = np.load(ctx.upstream("evaluate") / "test_scores.npy")
    primary = primary_metric(task, config.evaluation)[0]

    checks = g.size_checks(len(y), gates.min_test_rows, "test rows") + g.threshold_checks(metrics, gates)
    decision: dict = {"checks": checks, "slices": [], "champion": None, "champion_version": None}

    sliced = gates.slices.columns or gates.slices.numeric
    test = raw_rows(ctx, "test") if (sliced or gates.champion.enabled) else None
    if sliced:
        missing = [c for c in [*gates.slices.columns, *gates.slices.numeric] if c not in test.columns]
        if missing:
            raise ConfigError(f"gates.slices: column {missing[0]!r} is not in the data", key="gates.slices")
        metric = gates.slices.metric or primary
        rows, slice_checks = g.slice_checks(task, metric, y, scores, g.slice_masks(test, gates.slices),
                                            gates.slices, threshold)
        decision["slices"] = rows
        checks.extend(slice_checks)

    champion = current_champion(ctx, decision)
    if champion is not None:
        registry, name, version = champion
        path, problem = champion_package(registry, name, version)
        if path is not None:
            old, problem = champion_scores(path, test[[c for c in test.columns if c != config.data.target]], task,
                                           classes)
        metric = gates.champion.metric or primary
        if problem:
            decision["champion"], failed = failed_comparison(version, problem)
            checks.append(failed)
        else:
            record, champion_checks = g.champion_check(task, metric, y, scores, old, gates.champion, threshold, version)
            decision["champion"] = {"status": "compared", **record}
            checks.extend(champion_checks)

    return decide(ctx, decision, checks)


def idle_tracking(ctx) -> None:
    """Let this run's MLflow worker thread finish what it queued before this thread opens the registry.
    Two threads importing MLflow at once can meet inside its circular imports (`ImportError: cannot import
    name '_get_store' from partially initialized module 'mlflow.tracking'`), e.g. when a resumed run's
    worker is still reopening its MLflow run. Later calls start the worker again."""
    if ctx.tracking is not None:
        ctx.tracking.close()


def registered_version(ctx, registry: Registry | None = None, mlflow_run: str | None = None):
    """(registry, name, version) of the version this run already registered, or None (any task).

    Matched by the version's `trainpipe.run_id` tag, and by the version's MLflow run when this run's is
    known; a version created before this run folder was is another run that had the same id (a run
    folder deleted and its id used again)."""
    config = ctx.config
    if not registry_enabled(config):
        return None
    if registry is None:
        idle_tracking(ctx)
        registry = Registry(ctx.store, config.tracking)
    name = model_name(config)
    if not registry.exists(name):
        return None
    meta = json.loads((ctx.run_dir / "run.json").read_text())
    mlflow_run = mlflow_run or (ctx.tracking.mlflow_run_id if ctx.tracking is not None else None) \
        or meta.get("mlflow_run_id")
    created_ms = datetime.strptime(meta["created_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp() * 1000
    found = [mv for mv in registry.run_versions(ctx.run_id, name)
             if (mv.run_id == mlflow_run if mlflow_run else mv.creation_timestamp >= created_ms)]
    return (registry, name, str(found[0].version)) if found else None


def earlier_decision(ctx) -> dict | None:
    """The stage's result when this run already registered a version: its earlier decision, unchanged."""
    done = registered_version(ctx)
    if done is None:
        return None
    _, name, version = done
    previous = ctx.upstream("gate") / "decision.json"
    decision = json.loads(previous.read_text()) if previous.exists() else {
        "checks": [], "slices": [], "champion": None, "champion_version": None, "passed": True}
    decision["already_registered"] = {"name": name, "version": version,
                                      "reason": f"run {ctx.run_id} already registered {name} v{version}: its "
                                                "earlier decision stands, the gate is not run again"}
    (ctx.stage_dir / "decision.json").write_text(json.dumps(decision, indent=2, default=str))
    champion = decision.get("champion") or {}
    return {"outputs": {"decision": "decision.json"}, "artifacts": ["decision.json"],
            "summary": {"passed": True, "checks": len(decision.get("checks", [])), "champion": champion.get("status"),
                        "champion_version": decision.get("champion_version"),
                        "improvement": champion.get("improvement"),
                        "note": decision["already_registered"]["reason"]}}


def champion_package(registry: Registry, name: str, version: str):
    """(verified package folder, None) or (None, why it is unusable and how to repair the registry)."""
    try:
        path, _ = registry.verified_path(f"{name}/{version}")
        return path, None
    except RegistryError as exc:
        return None, f"the champion's package is broken: {exc.message}; {repair_hint(name)}"


def repair_hint(name: str) -> str:
    return (f"point @champion at an intact version first: `trainpipe models rollback {name}` or "
            f"`trainpipe models promote {name} VERSION` (`trainpipe models describe {name}/VERSION` verifies one)")


def failed_comparison(version: str, reason: str) -> tuple[dict, dict]:
    """The decision's champion record and the failed check when the champion cannot be compared (any task)."""
    return ({"status": "failed", "reason": reason, "champion_version": version},
            {"check": "champion comparison", "key": "gates.champion", "value": None, "limit": None, "passed": False,
             "reason": reason})


def current_champion(ctx, decision: dict):
    """(registry, name, version) of the champion to compare with, or None with the reason in `decision` (any task)."""
    config = ctx.config
    if not config.gates.champion.enabled:
        decision["champion"] = {"status": "disabled", "reason": "gates.champion.enabled is false"}
        return None
    if not registry_enabled(config):
        decision["champion"] = {"status": "skipped", "reason": "the registry is off (tracking or registry disabled)"}
        return None
    idle_tracking(ctx)
    registry, name = Registry(ctx.store, config.tracking), model_name(config)
    version = registry.alias_version(name, "champion")
    decision["champion_version"] = version
    if version is None:
        decision["champion"] = {"status": "skipped", "reason": f"no champion of {name!r} yet: comparison skipped"}
        return None
    return registry, name, version


def decide(ctx, decision: dict, checks: list[dict]) -> dict:
    """Save the decision; raise GateFailed naming the first failed check, else the stage's result (any task)."""
    decision["passed"] = all(c["passed"] for c in checks)
    (ctx.stage_dir / "decision.json").write_text(json.dumps(decision, indent=2, default=str))
    failed = [c for c in checks if not c["passed"]]
    if failed:
        more = f" (+{len(failed) - 1} more failed check(s))" if len(failed) > 1 else ""
        raise GateFailed(f"gate failed: {failed[0]['reason']} [{failed[0]['key']}]{more}; nothing was registered",
                         key=failed[0]["key"], decision=decision)
    champion = decision["champion"] or {}
    out_metrics = {"gate_passed": 1.0}
    if champion.get("status") == "compared":
        out_metrics["champion_improvement"] = float(champion["improvement"])
    return {
        "outputs": {"decision": "decision.json"},
        "artifacts": ["decision.json"],
        "metrics": out_metrics,
        "summary": {"passed": True, "checks": len(checks), "champion": champion.get("status"),
                    "champion_version": decision["champion_version"], "improvement": champion.get("improvement")},
    }
