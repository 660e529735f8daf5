"""The ranking side of validate, split, features and train: what each generic stage delegates to
when `task: ranking`. Same contract as any stage: read upstream folders, write into ctx.stage_dir,
return outputs/metrics/summary.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np

from trainpipe.ranking.interactions import Interactions

SPLITS = ("train", "validation", "test")


# -- shared loaders --------------------------------------------------------------------------
def load_split(ctx) -> tuple[Interactions, dict[str, np.ndarray]]:
    data = Interactions.load(ctx.upstream("validate"))
    with np.load(ctx.upstream("split") / "split.npz") as parts:
        return data, {name: parts[name] for name in SPLITS}


def split_matrices(data: Interactions, parts: dict[str, np.ndarray]) -> dict:
    """users × items CSR per split, plus what each held-out split excludes from ranking."""
    from trainpipe.ranking.metrics import interaction_matrix

    m = {name: interaction_matrix(data.user[idx], data.item[idx], data.n_users, data.n_items)
         for name, idx in parts.items()}
    seen = (m["train"] + m["validation"]).tocsr()
    seen.data[:] = 1.0
    m["exclude_validation"], m["exclude_test"] = m["train"], seen
    return m


def load_side_features(ctx) -> dict:
    """{"user"|"item": (numeric, categorical, cardinalities) or None} from the features stage."""
    info = json.loads((ctx.upstream("features") / "features.json").read_text())
    out = {}
    for side in ("user", "item"):
        if info.get(side) is None:
            out[side] = None
            continue
        with np.load(ctx.upstream("features") / f"{side}_features.npz") as f:
            out[side] = (f["num"], f["cat"], info[side]["cardinalities"])
    return out


# -- stages ----------------------------------------------------------------------------------
def validate(ctx) -> dict:
    from trainpipe.ranking.interactions import prepare
    from trainpipe.stages import load_table

    data, report = prepare(load_table(ctx), ctx.config.ranking)
    data.save(ctx.stage_dir)
    report.update(passed=True, status="passed", errors=[])
    (ctx.stage_dir / "report.json").write_text(json.dumps(report, indent=2))
    return {
        "outputs": {"report": "report.json", "interactions": "interactions.npz"},
        "artifacts": ["report.json"],
        "metrics": {"interactions": float(len(data)), "users": float(data.n_users), "items": float(data.n_items),
                    "data_check_warnings": float(len(report["warnings"]))},
        "summary": {"checks_passed": True, "interactions": len(data), "users": data.n_users, "items": data.n_items,
                    "dropped": {k: v for k, v in report["dropped"].items() if v}, "warnings": len(report["warnings"]),
                    "warning_messages": report["warnings"][:5],
                    "line": f"{len(data):,} interactions · {data.n_users:,} users · {data.n_items:,} items"
                            + "".join(f" · dropped {v:,} ({k.replace('_', ' ')})" for k, v in report["dropped"].items() if v)},
    }


def split(ctx) -> dict:
    from trainpipe.ranking.split import make_split

    config = ctx.config.ranking.split
    data = Interactions.load(ctx.upstream("validate"))
    seed = config.seed if config.seed is not None else ctx.config.seed
    parts, summary = make_split(data, config, seed)
    np.savez(ctx.stage_dir / "split.npz", **parts)
    digest = hashlib.sha256(b"".join(parts[name].tobytes() for name in SPLITS)).hexdigest()[:16]
    summary.update(seed=seed, hash=digest)
    (ctx.stage_dir / "split.json").write_text(json.dumps(summary, indent=2))
    return {"identity": digest, "outputs": {"split": "split.npz", "manifest": "split.json"},
            "artifacts": ["split.json"], "summary": {"strategy": config.strategy, **summary["sizes"]},
            "metrics": {f"rows_{name}": float(len(parts[name])) for name in SPLITS}}


def features(ctx) -> dict:
    from trainpipe.ranking.features import aligned_features

    ranking = ctx.config.ranking
    data = Interactions.load(ctx.upstream("validate"))
    info: dict = {"user": None, "item": None}
    for side, table, ids in (("user", ranking.user_features, data.user_ids), ("item", ranking.item_features, data.item_ids)):
        if table is None:
            continue
        num, cat, encoder, report = aligned_features(table, f"{side}_features", ids)
        np.savez(ctx.stage_dir / f"{side}_features.npz", num=num, cat=cat)
        info[side] = {"encoder": encoder.state_dict(), "cardinalities": encoder.cardinalities, "report": report}
    (ctx.stage_dir / "features.json").write_text(json.dumps(info, indent=2, default=str))
    summary = {side: (None if info[side] is None else {k: info[side]["report"][k] for k in ("matched", "without_features")})
               for side in ("user", "item")}
    summary["line"] = " · ".join(f"{side} features for {s['matched']:,} ids ({s['without_features']:,} without)"
                                 for side, s in summary.items() if s) or "ids only (no user/item feature tables)"
    return {"outputs": {"info": "features.json"}, "artifacts": ["features.json"], "summary": summary}


def train(ctx) -> dict:
    from trainpipe.models.base import FitContext
    from trainpipe.models.two_tower import RankingData, TwoTowerFamily

    config, ranking = ctx.config, ctx.config.ranking
    data, parts = load_split(ctx)
    m = split_matrices(data, parts)
    side = load_side_features(ctx)
    val_users = np.flatnonzero(np.diff(m["validation"].indptr) > 0)
    if ranking.validation_users and len(val_users) > ranking.validation_users:
        val_users = np.sort(np.random.default_rng(config.seed).choice(val_users, ranking.validation_users, replace=False))
    idx = parts["train"]
    threads = config.training.threads or os.cpu_count() or 1
    model = TwoTowerFamily(config.task, dict(config.model.params), 0, config.seed, threads)
    user, item = side["user"], side["item"]
    payload = RankingData(
        user=data.user[idx], item=data.item[idx], weight=data.weight[idx], n_users=data.n_users, n_items=data.n_items,
        user_num=user[0] if user else None, user_cat=user[1] if user else None, user_cards=user[2] if user else None,
        item_num=item[0] if item else None, item_cat=item[1] if item else None, item_cards=item[2] if item else None,
        validation_relevant=m["validation"], exclude=m["exclude_validation"], ks=tuple(ranking.k),
        validation_users=val_users, batch_users=ranking.eval_batch_users)
    context = FitContext(checkpoint_dir=ctx.checkpoint_dir("train"), checkpoint=config.training.checkpoint,
                         config_hash=ctx.cache_key, resume_anyway=ctx.resume_anyway, verbose=ctx.progress,
                         callbacks=config.training.callbacks)
    started = time.perf_counter()
    result = model.fit(payload, early_stopping_rounds=config.training.early_stopping_rounds, context=context)
    seconds = time.perf_counter() - started
    model.save(ctx.stage_dir / "model")
    (ctx.stage_dir / "history.json").write_text(json.dumps(result.history))
    metrics = {"train_seconds": seconds, "iterations": float(result.iterations),
               "train_interactions_per_s": len(idx) * result.iterations / max(seconds, 1e-9)}
    if result.best_iteration is not None:
        metrics["best_iteration"] = float(result.best_iteration)
    return {
        "outputs": {"model": "model", "history": "history.json"}, "history": "history.json",
        "artifacts": ["model", "history.json"], "metrics": metrics,
        "summary": {"family": config.model.type, "iterations": result.iterations, "best_iteration": result.best_iteration,
                    "stopped_early": result.stopped_early, "seconds": round(seconds, 2),
                    "interactions_per_s": round(metrics["train_interactions_per_s"])},
    }
