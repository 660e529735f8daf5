"""register: package the model as a pyfunc, register it with lineage, move the aliases.

The packaged folder is written into the run folder first (so `trainpipe predict RUN_ID` works even
with the registry off) and its SHA-256 recorded. With the registry on, the version gets
`challenger`, and under `registry.promotion: auto` becomes `champion` when it beat the champion the
gate compared against by more than the comparison's tolerance (a tie or an allowed regression passes
the gate but stays challenger), or when there was none; that move is compare-and-set, so a champion
moved by someone else meanwhile is left alone and said so.

Idempotent per run: a run registers at most one version. Run again (a resume, `trainpipe stage register`
on a finished run, a resume after a kill mid-register), it finds that version and copies its registered
package back into the run folder. After a register that finished, it touches no alias; after one that was
cut short (no `register/registered.json` naming the version), it completes only the alias moves that are
missing — a kill between creating the version and moving an alias, or between moving it and writing the
audit entry. No second version appears either way.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainpipe.errors import RegistryError, RunError
from trainpipe.monitoring import events
from trainpipe.registry.client import SHA_TAG, Registry, model_name, registry_enabled
from trainpipe.registry.model_card import render_card
from trainpipe.stages.context import StageContext, StageResult, StageSpec
from trainpipe.stages.drift import REFERENCE_FILE
from trainpipe.stages.gate import idle_tracking, registered_version

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig


def line(s: dict) -> str:
    return (f"{s.get('name')} v{s.get('version')} @{' @'.join(s.get('aliases') or [])}"
            if s.get("version") else "registry off: packaged in the run folder")


# Never reused from the cache: what it does depends on the registry, not only on the run folder.
SPEC = StageSpec("register", sections=("registry", "evaluation", "task", "ranking"),
                 upstream=("ingest", "split", "features", "train", "evaluate", "gate"), line=line, reusable=False)


def _mlflow_run_id(ctx: StageContext) -> str:
    if ctx.tracking is not None:
        ctx.tracking.close()  # every queued MLflow call of this run has landed
        if ctx.tracking.mlflow_run_id:
            return ctx.tracking.mlflow_run_id
    found = json.loads((ctx.run_dir / "run.json").read_text()).get("mlflow_run_id")
    if not found:
        raise RunError(f"register: run {ctx.run_id} has no MLflow run to attach the model to", key="tracking")
    return found


def tuning_lineage(ctx: StageContext) -> dict[str, str]:
    """A tuned model's lineage: which study chose its parameters (the tune stage's study.json)."""
    study_file = ctx.upstream("tune") / "study.json"
    if not (ctx.config.tuning.enabled and study_file.exists()):
        return {}
    study = json.loads(study_file.read_text())
    return {"trainpipe.optuna_study": study["study"], "trainpipe.optuna_storage": study["storage"],
            "trainpipe.optuna_best_trial": str(study["best_trial"]),
            "trainpipe.optuna_best_value": f"{study['metric']}={study['best_value']:.6g}"}


def lineage_tags(ctx: StageContext, decision: dict, sha: str) -> dict[str, str]:
    from trainpipe.tracking.environment import environment_tags, git_info

    evaluate = ctx.manifest("evaluate")
    name, _ = ctx.task.primary_metric()
    champion = decision.get("champion") or {}
    gate = f"passed {len(decision['checks'])} check(s); champion {champion.get('status')}"
    if champion.get("status") == "compared":
        gate += f" v{champion['champion_version']}: {champion['metric']} {champion['improvement']:+.4g}"
    return {"trainpipe.run_id": ctx.run_id, "trainpipe.data_fingerprint": ctx.manifest("ingest")["identity"],
            "trainpipe.split_hash": ctx.manifest("split")["identity"], "trainpipe.config_hash": evaluate["config_hash"],
            "trainpipe.parent_champion": str(decision.get("champion_version") or "none"), "trainpipe.gate": gate,
            "trainpipe.family": ctx.config.model.type, "trainpipe.primary_metric": name,
            "trainpipe.test_metric": str(evaluate["metrics"].get(f"test_{name}")), SHA_TAG: sha,
            **git_info(Path.cwd()), **environment_tags(), **tuning_lineage(ctx)}


def run(ctx: StageContext) -> StageResult:
    from filelock import FileLock

    idle_tracking(ctx)  # before anything here imports MLflow (packaging does)
    decision = ctx.read_json("gate", "decision.json")
    # one register of a run at a time: a second one (e.g. two resumes) waits, then finds the version
    with FileLock(str(ctx.run_dir / ".register.lock"), timeout=600):
        if registry_enabled(ctx.config):
            done = registered_version(ctx, mlflow_run=_mlflow_run_id(ctx))
            if done is not None:
                return complete_registration(ctx, *done, decision)
        package = ctx.task.package(ctx, ctx.stage_dir / "model")
        package = replace(package, sha=save_drift_reference(ctx, ctx.stage_dir / "model") or package.sha)
        lineage = lineage_tags(ctx, decision, package.sha)
        name = model_name(ctx.config)
        card = render_card(name=name, config=ctx.config, split=ctx.read_json("split", "split.json"),
                           metrics=package.card_metrics, cis=package.cis, decision=decision, lineage=lineage)
        (ctx.stage_dir / "model_card.md").write_text(card)
        return finish_registration(ctx, name, package.sha, lineage, card, decision,
                                   interval_seconds=package.interval_seconds)


def save_drift_reference(ctx: StageContext, package: Path) -> str | None:
    """The summary of the rows the model was trained on, inside the package (so the package checksum covers it):
    later runs measure their drift against it while this version is champion. Returns the new checksum, or None
    when the task keeps no reference."""
    from trainpipe.data.drift import summarize
    from trainpipe.registry.packaging import tree_sha256

    table = ctx.task.drift_table(ctx, "train")
    if table is None:
        return None
    config = ctx.config
    # the rows drift_table sampled
    summary = summarize(table.frame, table.label, table.label_kind, table.categorical,  # type: ignore[arg-type]
                        config.drift.max_categories)
    (package / REFERENCE_FILE).write_text(json.dumps(summary, separators=(",", ":")))
    return tree_sha256(package)


def finish_registration(ctx: StageContext, name: str, sha: str, lineage: dict, card: str, decision: dict, *,
                        interval_seconds: float | None = None) -> StageResult:
    """Register the packaged `model/` folder (any task): challenger, then champion under the promotion policy."""
    record: dict[str, Any] = {"registry": "disabled", "name": name, "version": None, "aliases": [], "promoted": False,
              "sha256": sha, "package": str(ctx.run_dir / "register" / "model"), "note": None,
              "interval_seconds": interval_seconds}
    if registry_enabled(ctx.config):
        registry = Registry(ctx.store, ctx.config.tracking)
        version = registry.create_version(name, ctx.stage_dir / "model", _mlflow_run_id(ctx), lineage, card)
        record.update(registry="mlflow", version=version, **settle_aliases(ctx, registry, name, version, decision))
    return _result(ctx, record)


def complete_registration(ctx: StageContext, registry: Registry, name: str, version: str,
                          decision: dict) -> StageResult:
    """This run registered `version` before: put its registered package back in the run folder and add
    only the alias moves it is missing."""
    try:
        path, mv = registry.verified_path(f"{name}/{version}")
    except RegistryError as exc:
        raise RegistryError(f"run {ctx.run_id} registered {name} v{version}, but {exc.message}; register "
                            f"another run or repair it (`trainpipe models describe {name}/{version}`)",
                            key="model") from None
    shutil.copytree(path, ctx.stage_dir / "model")
    (ctx.stage_dir / "model_card.md").write_text(mv.description or "")
    finished_file = ctx.upstream("register") / "registered.json"  # there only if that register ran to the end
    finished = json.loads(finished_file.read_text()) if finished_file.exists() else {}
    if (finished.get("name"), finished.get("version")) == (name, version):  # nothing was cut short: touch nothing
        moves = {"aliases": sorted(a for a, v in registry.aliases(name).items() if v == version),
                 "promoted": finished.get("promoted", False), "note": finished.get("note")}
    else:
        moves = settle_aliases(ctx, registry, name, version, decision)
    record = {"registry": "mlflow", "name": name, "version": version, "sha256": mv.tags.get(SHA_TAG),
              "package": str(ctx.run_dir / "register" / "model"), "already_registered": True, **moves}
    done = f"run {ctx.run_id} already registered {name} v{version}"
    if not (record["note"] or "").startswith(done):
        record["note"] = f"{done}; {record['note']}" if record["note"] else done
    return _result(ctx, record)


def promotion(config: PipelineConfig, decision: dict, name: str, version: str) -> tuple[bool, str]:
    """(promote?, why): the registry.promotion policy applied to the gate's decision."""
    champion = decision.get("champion") or {}
    parent = decision.get("champion_version")
    if config.registry.promotion == "manual":
        return False, f"promotion is manual: `trainpipe models promote {name} {version}`"
    if parent is None:
        return True, "first passing version"
    if champion.get("status") != "compared":
        return False, "not promoted: the champion comparison did not run"
    gain, tolerance = champion.get("improvement", 0), champion.get("tolerance", 0.0)
    if not gain > tolerance:  # passing the gate means "not worse"; taking the champion's place takes being better
        return False, (f"not promoted: did not beat v{parent} on {champion['metric']} (improvement {gain:+.4g}, "
                       f"tolerance {tolerance:.1g}); stays challenger")
    return True, f"beat v{parent} on {champion['metric']} by {gain:+.4g}"


def settle_aliases(ctx: StageContext, registry: Registry, name: str, version: str, decision: dict) -> dict:
    """Give `version` the aliases its decision earned, each move once.

    A move is done when the audit log has an entry moving that alias to this version. When the alias
    already points here without one, the process that moved it was killed before writing it: the entry is
    written now. @challenger goes to the newest version that passed its gates, so completing an old
    registration never takes it from a newer one."""
    history = registry.history(name)
    done = {e["alias"] for e in history if str(e.get("to")) == str(version)}
    last = {e["alias"]: e.get("to") for e in history}  # where each alias was last recorded to point
    notes = []
    if "challenger" not in done:
        current = registry.alias_version(name, "challenger")
        if current == str(version):
            registry.record_move(name, "challenger", last.get("challenger"), version, action="challenger",
                                 reason="passed its gates (recorded on resume)", run=ctx.run_id)
        elif current is None or int(current) < int(version):
            registry.point(name, "challenger", version, action="challenger", reason="passed its gates", run=ctx.run_id)
        else:
            notes.append(f"@challenger stays on the newer v{current}")
    promote, why = promotion(ctx.config, decision, name, version)
    if promote and "champion" not in done:
        expected = decision.get("champion_version")
        if registry.alias_version(name, "champion") == str(version):
            registry.record_move(name, "champion", expected, version, action="auto-promote",
                                 reason=f"{why} (recorded on resume)", run=ctx.run_id)
        else:
            try:
                registry.promote(name, version, expected=expected, action="auto-promote", reason=why, run=ctx.run_id)
                ctx.emit(events.champion_changed(name, "champion", expected, version, by="register", run_id=ctx.run_id))
            except RegistryError as exc:  # another pipeline moved the champion since our gate: leave it
                promote = False
                notes.append(f"not promoted: {exc.message}")
    elif not promote:
        notes.append(why)
    aliases = sorted(a for a, v in registry.aliases(name).items() if str(v) == str(version))
    return {"aliases": aliases, "promoted": promote, "note": "; ".join(notes) or None}


def _result(ctx: StageContext, record: dict) -> StageResult:
    (ctx.stage_dir / "registered.json").write_text(json.dumps(record, indent=2))
    return StageResult(
        outputs={"model": "model", "card": "model_card.md", "registered": "registered.json"},
        artifacts=["model_card.md", "registered.json"],
        summary={k: record.get(k) for k in ("registry", "name", "version", "aliases", "promoted", "note",
                                            "interval_seconds")},
    )
