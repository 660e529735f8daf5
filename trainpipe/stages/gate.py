"""gate: may this model be registered? Test size, thresholds, slices and the current champion, one decision.

The champion is scored by its own packaged model on this run's test set, less the rows it trained or validated on
when this run's split is not its own (tasks/unseen.py; too few left fail the comparison, unmatched rows are compared
with a warning), by the task (tabular tasks run its pyfunc, with its own preprocessing, on the raw test rows;
ranking asks its recommender for the same test users with the same exclusions), so both models are judged on exactly the same rows. What the test
size counts, and the slices, are the task's too. No champion yet: the comparison is
skipped and the decision says so. A champion whose package is broken (changed files, files gone)
fails the gate with the commands that repair the registry. A failed gate raises GateFailed (exit 3);
its decision.json stays in `gate.failed/` and is logged to MLflow, and register never runs.

A run that already registered a version (a resume or a rerun of a finished run) is not judged
again: its earlier decision stands, so register can complete that same version and nothing else.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from trainpipe.errors import GateFailed, RegistryError
from trainpipe.monitoring import events
from trainpipe.evaluation import gates as g
from trainpipe.registry.client import Registry, model_name, registry_enabled
from trainpipe.stages.context import StageContext, StageResult, StageSpec
from trainpipe.stages.drift import gate_checks as drift_checks
from trainpipe.store import is_run_id
from trainpipe.tasks.base import ChampionLineage


def line(s: dict) -> str:
    compared = s.get("compared_rows")  # [rows the champion never saw, test rows, unit]: the split is not its own
    return (f"passed {s.get('checks')} check(s) · champion {s.get('champion')}"
            + (f" v{s.get('champion_version')} ({s.get('improvement'):+.4g})" if s.get("improvement") is not None else "")
            + (f" on the {compared[0]} of {compared[1]} {compared[2]} it did not train on" if compared else "")
            + (" · warning: it may have trained on some of the test rows compared" if s.get("warning_messages") else ""))


# Never reused from the cache: the decision depends on the registry (the champion), not only on the run folder.
SPEC = StageSpec("gate", sections=("gates", "evaluation", "registry", "task", "ranking", "drift"),
                 upstream=("ingest", "drift", "split", "features", "evaluate"), line=line, reusable=False)


def run(ctx: StageContext) -> StageResult:
    earlier = earlier_decision(ctx)
    if earlier is not None:
        return earlier
    config, gates, task = ctx.config, ctx.config.gates, ctx.task
    metrics = ctx.manifest("evaluate")["metrics"]
    count, unit = task.test_size(ctx)
    checks = (g.size_checks(count, gates.min_test_rows, unit) + g.threshold_checks(metrics, gates)
              + task.baseline_checks(metrics) + drift_checks(ctx))
    decision: dict = {"checks": checks, "slices": [], "champion": None, "champion_version": None}
    checks.extend(task.slice_checks(ctx, decision))

    champion = current_champion(ctx, decision)
    if champion is not None:
        registry, name, version = champion
        metric = gates.champion.metric or task.primary_metric()[0]
        path, lineage, problem = champion_package(ctx, registry, name, version)
        scores = None
        if path is not None and lineage is not None:
            scores, problem = task.champion_scores(ctx, path, metric, lineage)
        if scores is None:
            decision["champion"], failed = failed_comparison(version, problem or "the champion cannot be compared")
            checks.append(failed)
        elif scores.rows.get("excluded") and len(scores.y) < max(gates.min_test_rows, 1):  # too few it did not see
            decision["champion"], failed = failed_comparison(version, too_few_rows(scores.rows, len(scores.y), unit,
                                                                                   gates.min_test_rows, name, version))
            decision["champion"]["rows"] = scores.rows
            checks.append(failed)
        else:
            record, champion_checks = g.champion_check(config.task, metric, scores.y, scores.challenger,
                                                       scores.champion, gates.champion, config.evaluation.threshold,
                                                       version)
            decision["champion"] = {"status": "compared", **record, "rows": scores.rows}
            if scores.rows.get("excluded"):  # a failed comparison's line says on which rows it was made
                subset = (f" (on the {len(scores.y)} of {scores.rows.get('test_rows', len(scores.y))} "
                          f"{scores.rows.get('unit', 'test rows')} champion v{version} did not train on)")
                for check in champion_checks:
                    check["reason"] += subset
            if scores.rows.get("warning"):
                decision["champion"]["warning"] = scores.rows["warning"]
            checks.extend(champion_checks)

    return decide(ctx, decision, checks)


def idle_tracking(ctx: StageContext) -> None:
    """Let this run's MLflow worker thread finish what it queued before this thread opens the registry.
    Two threads importing MLflow at once can meet inside its circular imports (`ImportError: cannot import
    name '_get_store' from partially initialized module 'mlflow.tracking'`), e.g. when a resumed run's
    worker is still reopening its MLflow run. Later calls start the worker again."""
    if ctx.tracking is not None:
        ctx.tracking.close()


def registered_version(ctx: StageContext, registry: Registry | None = None,
                       mlflow_run: str | None = None) -> tuple[Registry, str, str] | None:
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


def earlier_decision(ctx: StageContext) -> StageResult | None:
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
    return StageResult(outputs={"decision": "decision.json"}, artifacts=["decision.json"],
                       summary={"passed": True, "checks": len(decision.get("checks", [])),
                                "champion": champion.get("status"), "champion_version": decision.get("champion_version"),
                                "improvement": champion.get("improvement"),
                                "note": decision["already_registered"]["reason"]})


def champion_package(ctx: StageContext, registry: Registry, name: str,
                     version: str) -> tuple[Path | None, ChampionLineage | None, str | None]:
    """(verified package folder, its lineage, None) or (None, None, why it is unusable and how to repair the
    registry)."""
    try:
        path, mv = registry.verified_path(f"{name}/{version}")
    except RegistryError as exc:
        return None, None, f"the champion's package is broken: {exc.message}; {repair_hint(name)}"
    return path, champion_lineage(ctx, version, dict(mv.tags or {})), None


def champion_lineage(ctx: StageContext, version: str, tags: dict[str, str]) -> ChampionLineage:
    """The champion's lineage tags, and its run folder when this store still has it (tasks/unseen.py reads its
    split only when this run's split differs)."""
    run_id = tags.get("trainpipe.run_id")
    run_dir = ctx.store.runs_dir / run_id if run_id is not None and is_run_id(run_id) else None
    return ChampionLineage(version=version, run_id=run_id, split_hash=tags.get("trainpipe.split_hash"),
                           data_fingerprint=tags.get("trainpipe.data_fingerprint"),
                           run_dir=run_dir if run_dir is not None and run_dir.is_dir() else None)


def too_few_rows(rows: dict, compared: int, unit: str, minimum: int, name: str, version: str) -> str:
    """Why the comparison fails when the champion saw nearly all of this run's test rows, and what to do."""
    return (f"only {compared} of {rows.get('test_rows', compared)} {unit} are left that champion v{version} did not "
            f"train or validate on (this run's split differs from its run's), fewer than gates.min_test_rows "
            f"{max(minimum, 1)}: too few to compare; use the champion's split (its data and split seed), set "
            f"gates.champion.enabled: false for this run, or choose the champion yourself with "
            f"`trainpipe models promote {name} VERSION`")


def repair_hint(name: str) -> str:
    return (f"point @champion at an intact version first: `trainpipe models rollback {name}` or "
            f"`trainpipe models promote {name} VERSION` (`trainpipe models describe {name}/VERSION` verifies one)")


def failed_comparison(version: str, reason: str) -> tuple[dict, dict]:
    """The decision's champion record and the failed check when the champion cannot be compared (any task)."""
    return ({"status": "failed", "reason": reason, "champion_version": version},
            {"check": "champion comparison", "key": "gates.champion", "value": None, "limit": None, "passed": False,
             "reason": reason})


def current_champion(ctx: StageContext, decision: dict) -> tuple[Registry, str, str] | None:
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


def decide(ctx: StageContext, decision: dict, checks: list[dict]) -> StageResult:
    """Save the decision; raise GateFailed naming the first failed check, else the stage's result (any task)."""
    decision["passed"] = all(c["passed"] for c in checks)
    (ctx.stage_dir / "decision.json").write_text(json.dumps(decision, indent=2, default=str))
    failed = [c for c in checks if not c["passed"]]
    if failed:
        ctx.emit(events.gate_failed(ctx.run_id, [f"{c['reason']} [{c['key']}]" for c in failed],
                                    {"checks": len(checks), "champion_version": decision.get("champion_version")}))
        more = f" (+{len(failed) - 1} more failed check(s))" if len(failed) > 1 else ""
        raise GateFailed(f"gate failed: {failed[0]['reason']} [{failed[0]['key']}]{more}; nothing was registered",
                         key=failed[0]["key"], decision=decision)
    champion = decision["champion"] or {}
    out_metrics = {"gate_passed": 1.0}
    summary = {"passed": True, "checks": len(checks), "champion": champion.get("status"),
               "champion_version": decision["champion_version"], "improvement": champion.get("improvement")}
    if champion.get("status") == "compared":
        out_metrics["champion_improvement"] = float(champion["improvement"])
        rows = champion.get("rows") or {}
        out_metrics["champion_compared_rows"] = float(rows.get("compared", 0))
        if rows.get("excluded"):
            summary["compared_rows"] = [rows["compared"], rows["test_rows"], rows.get("unit", "test rows")]
        if champion.get("warning"):
            summary["warning_messages"] = [champion["warning"]]
    return StageResult(outputs={"decision": "decision.json"}, artifacts=["decision.json"], metrics=out_metrics,
                       summary=summary)
