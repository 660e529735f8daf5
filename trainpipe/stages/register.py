"""register: package the model as a pyfunc, register it with lineage, move the aliases.

The packaged folder is written into the run folder first (so `trainpipe predict RUN_ID` works even
with the registry off) and its SHA-256 recorded. With the registry on, the version gets
`challenger`, and under `registry.promotion: auto` becomes `champion` when it beat the champion the
gate compared against (a tie or an allowed regression passes the gate but stays challenger), or when
there was none; that move
is compare-and-set, so a champion moved by someone else meanwhile is left alone and said so.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainpipe.errors import RegistryError, RunError
from trainpipe.evaluation.gates import WEIGHTED, metric_ci
from trainpipe.evaluation.metrics import primary_metric
from trainpipe.model_card import render_card
from trainpipe.packaging import build_package, input_kind
from trainpipe.registry import SHA_TAG, Registry, model_name, registry_enabled
from trainpipe.stages import load_table, raw_rows
from trainpipe.tuning.retrain import lineage as tuning_lineage


def _mlflow_run_id(ctx) -> str:
    if ctx.tracking is not None:
        ctx.tracking.close()  # every queued MLflow call of this run has landed
        if ctx.tracking.mlflow_run_id:
            return ctx.tracking.mlflow_run_id
    found = json.loads((ctx.run_dir / "run.json").read_text()).get("mlflow_run_id")
    if not found:
        raise RunError(f"register: run {ctx.run_id} has no MLflow run to attach the model to", key="tracking")
    return found


def lineage_tags(ctx, decision: dict, sha: str) -> dict[str, str]:
    from trainpipe.tracking import environment_tags, git_info

    evaluate = ctx.manifest("evaluate")
    name, _ = primary_metric(ctx.config.task, ctx.config.evaluation)
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


def run(ctx) -> dict:
    config = ctx.config
    if config.task == "ranking":
        from trainpipe.ranking.register import register

        return register(ctx)
    decision = json.loads((ctx.upstream("gate") / "decision.json").read_text())
    info = json.loads((ctx.upstream("features") / "features.json").read_text())
    frame, test = load_table(ctx), raw_rows(ctx, "test")
    columns = info["input_columns"]
    meta = {"task": config.task, "classes": info["labels"]["classes"], "threshold": config.evaluation.threshold,
            "input_columns": columns, "inputs": [{"name": c, "kind": input_kind(frame[c])} for c in columns],
            "family": config.model.type, "id_column": config.data.id_column, "target": config.data.target,
            "trainpipe_run_id": ctx.run_id, "infinite": config.data.infinite}
    sha = build_package(ctx.stage_dir / "model", preprocessor=ctx.upstream("features") / "preprocessor.joblib",
                        model_dir=ctx.upstream("train") / "model", meta=meta, example=test[columns].head(5))

    import numpy as np

    y = np.load(ctx.upstream("features") / "y_test.npy")
    scores = np.load(ctx.upstream("evaluate") / "test_scores.npy")
    metrics = json.loads((ctx.upstream("evaluate") / "metrics.json").read_text())
    cis = {m: metric_ci(config.task, m, y, scores, seed=config.seed, threshold=config.evaluation.threshold)
           for m in metrics.get("test", {}) if m in WEIGHTED[config.task]}
    lineage = lineage_tags(ctx, decision, sha)
    name = model_name(config)
    card = render_card(name=name, config=config, split=json.loads((ctx.upstream("split") / "split.json").read_text()),
                       metrics=metrics, cis=cis, decision=decision, lineage=lineage)
    (ctx.stage_dir / "model_card.md").write_text(card)

    return finish_registration(ctx, name, sha, lineage, card, decision)


def finish_registration(ctx, name: str, sha: str, lineage: dict, card: str, decision: dict) -> dict:
    """Register the packaged `model/` folder (any task): challenger, then champion under the promotion policy."""
    config = ctx.config
    record = {"registry": "disabled", "name": name, "version": None, "aliases": [], "promoted": False,
              "sha256": sha, "package": str(ctx.run_dir / "register" / "model"), "note": None}
    if registry_enabled(config):
        registry = Registry(ctx.store, config.tracking)
        version = registry.create_version(name, ctx.stage_dir / "model", _mlflow_run_id(ctx), lineage, card)
        registry.point(name, "challenger", version, action="challenger", reason="passed its gates", run=ctx.run_id)
        record.update(registry="mlflow", version=version, aliases=["challenger"])
        champion = decision.get("champion") or {}
        if config.registry.promotion == "manual":
            record["note"] = f"promotion is manual: `trainpipe models promote {name} {version}`"
        elif decision.get("champion_version") is not None and champion.get("status") != "compared":
            record["note"] = "not promoted: the champion comparison did not run"
        elif decision.get("champion_version") is not None and not champion.get("improvement", 0) > 0:
            # passing the gate means "not worse"; taking the champion's place takes being better
            record["note"] = (f"not promoted: did not beat v{decision['champion_version']} on {champion['metric']} "
                              f"(improvement {champion.get('improvement', 0):+.4g}); stays challenger")
        else:
            why = ("first passing version" if decision.get("champion_version") is None else
                   f"beat v{decision['champion_version']} on {champion['metric']} by {champion['improvement']:+.4g}")
            try:
                registry.promote(name, version, expected=decision.get("champion_version"), action="auto-promote",
                                 reason=why, run=ctx.run_id)
                record.update(promoted=True, aliases=["challenger", "champion"])
            except RegistryError as exc:  # another pipeline moved the champion since our gate: leave it
                record["note"] = f"not promoted: {exc.message}"
    (ctx.stage_dir / "registered.json").write_text(json.dumps(record, indent=2))
    return {
        "outputs": {"model": "model", "card": "model_card.md", "registered": "registered.json"},
        "artifacts": ["model_card.md", "registered.json"],
        "summary": {k: record[k] for k in ("registry", "name", "version", "aliases", "promoted", "note")},
    }
