"""The ranking side of register: package the recommender, then the same registration as any task.

The served "seen" history is every interaction the model's data holds (train, validation and test):
at serving time all of it is the user's past.
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np


def _cis(per_user_file, names, seed: int, resamples: int = 200) -> dict[str, list[float]]:
    """Bootstrap intervals of the per-user test metrics (the model card's CI column), all on the same
    resampled users."""
    from trainpipe.evaluation.bootstrap import bootstrap_values, interval, prepare

    with np.load(per_user_file) as f:
        present = {n: f[n] for n in names if n in f.files and len(f[n])}
    if not present:
        return {}
    users = len(next(iter(present.values())))
    values = bootstrap_values(resamples, seed, users, [prepare("ranking", n, np.zeros(users), v)
                                                       for n, v in present.items()])
    return {n: interval(v, 0.95) for n, v in zip(present, values)}


def register(ctx) -> dict:
    from trainpipe.registry.model_card import render_card
    from trainpipe.models.two_tower import TwoTowerFamily
    from trainpipe.ranking.config import per_user_names, primary
    from trainpipe.data.interactions import Interactions
    from trainpipe.evaluation.ranking_metrics import interaction_matrix
    from trainpipe.registry.ranking_packaging import build_ranking_package
    from trainpipe.registry.serving import write_recommender
    from trainpipe.registry.client import model_name
    from trainpipe.stages.register import finish_registration, lineage_tags

    config, ranking = ctx.config, ctx.config.ranking
    decision = json.loads((ctx.upstream("gate") / "decision.json").read_text())
    data = Interactions.load(ctx.upstream("validate"))
    model_dir = ctx.upstream("train") / "model"
    U, V = TwoTowerFamily.load(model_dir).vectors()
    seen = interaction_matrix(data.user, data.item, data.n_users, data.n_items)
    features = json.loads((ctx.upstream("features") / "features.json").read_text())
    encoder = (features.get("user") or {}).get("encoder")
    parts = ctx.stage_dir / ".recommender"
    write_recommender(parts, model_dir=model_dir, user_ids=data.user_ids, item_ids=data.item_ids, user_vectors=U,
                      item_vectors=V, seen=seen, popularity=np.bincount(data.item, minlength=data.n_items),
                      user_encoder=encoder,
                      meta={"task": "ranking", "family": config.model.type, "user_column": ranking.user,
                            "item_column": ranking.item, "k": ranking.k, "trainpipe_run_id": ctx.run_id})
    feature_inputs = [(c, "double") for c in (encoder or {}).get("numeric", [])]
    feature_inputs += [(c, "string") for c in (encoder or {}).get("categorical", [])]
    sha = build_ranking_package(ctx.stage_dir / "model", parts, feature_inputs, [str(u) for u in data.user_ids[:3]])
    shutil.rmtree(parts, ignore_errors=True)

    name = model_name(config)
    metric = primary(ranking, config.evaluation.primary_metric)
    metrics = json.loads((ctx.upstream("evaluate") / "metrics.json").read_text())
    lineage = lineage_tags(ctx, decision, sha)
    lineage.update({"trainpipe.primary_metric": metric,
                    "trainpipe.test_metric": str(ctx.manifest("evaluate")["metrics"].get(f"test_{metric}"))})
    card_metrics = {"validation": metrics["validation"], "test": metrics["test"]}
    for baseline, values in metrics.get("baselines", {}).items():
        for split in ("validation", "test"):
            card_metrics[split].update({f"{baseline}_{k}": v for k, v in values[split].items()
                                        if k in per_user_names(ranking)})
    began = time.perf_counter()
    cis = _cis(ctx.upstream("evaluate") / "test_per_user.npz", per_user_names(ranking), config.seed)
    seconds = round(time.perf_counter() - began, 3)
    card = render_card(name=name, config=config, split=json.loads((ctx.upstream("split") / "split.json").read_text()),
                       metrics=card_metrics, cis=cis, decision=decision, lineage=lineage)
    (ctx.stage_dir / "model_card.md").write_text(card)
    return finish_registration(ctx, name, sha, lineage, card, decision, interval_seconds=seconds)
