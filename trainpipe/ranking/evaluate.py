"""The ranking side of evaluate and gate: the model and the baselines on the same users, exclusions
and streamed top-K; lift over popularity; the champion scored by its own packaged recommender.
"""

from __future__ import annotations

import json
import time

import numpy as np

from trainpipe.ranking.config import LIFTED, primary

HELD_OUT = ("validation", "test")


def _model_scorer(model_dir):
    import torch

    from trainpipe.models.two_tower import TwoTowerFamily

    U, V = TwoTowerFamily.load(model_dir).vectors()
    U_t, V_t = torch.from_numpy(U), torch.from_numpy(V)
    return lambda users: U_t[torch.from_numpy(users)] @ V_t.T


def lifts(model: dict, popularity: dict, ks: list[int]) -> dict[str, float | None]:
    """model / popularity for the per-user metrics (None when popularity scores 0)."""
    names = [f"{m}_at_{k}" for k in ks for m in LIFTED] + ["mrr"]
    return {f"lift_{n}": (model[n] / popularity[n] if popularity.get(n) else None) for n in names}


def evaluate(ctx) -> dict:
    from trainpipe.evaluation import baselines
    from trainpipe.evaluation.ranking_metrics import evaluate as score
    from trainpipe.ranking.stages import load_split, split_matrices

    config, ranking = ctx.config, ctx.config.ranking
    data, parts = load_split(ctx)
    m = split_matrices(data, parts)
    popularity = np.asarray(m["train"].sum(axis=0)).ravel()
    scorers = {"model": _model_scorer(ctx.upstream("train") / "model")}
    seconds: dict[str, float] = {}
    for name in ranking.baselines:
        began = time.perf_counter()
        scorers[name] = baselines.build(name, m["train"], ranking, config.seed)
        seconds[f"fit_{name}"] = time.perf_counter() - began
    results: dict[str, dict] = {name: {} for name in scorers}
    per_user_test = {}
    for split in HELD_OUT:
        for name, fn in scorers.items():
            began = time.perf_counter()
            results[name][split], per_user = score(fn, m[split], m[f"exclude_{split}"], ranking.k, popularity,
                                                   ranking.eval_batch_users)
            seconds[f"{split}_{name}"] = time.perf_counter() - began
            if split == "test":
                per_user_test[name] = per_user
    metrics = {"validation": results["model"]["validation"], "test": results["model"]["test"],
               "baselines": {b: results[b] for b in ranking.baselines}, "seconds": seconds}
    flat = {f"{s}_{k}": v for s in HELD_OUT for k, v in results["model"][s].items()}
    flat.update({f"{s}_{b}_{k}": v for b in ranking.baselines for s in HELD_OUT for k, v in results[b][s].items()})
    if "popularity" in ranking.baselines:
        metrics["lift"] = {s: lifts(results["model"][s], results["popularity"][s], ranking.k) for s in HELD_OUT}
        flat.update({f"{s}_{k}": v for s in HELD_OUT for k, v in metrics["lift"][s].items() if v is not None})
    flat.update({f"evaluate_seconds_{k}": v for k, v in seconds.items()})
    (ctx.stage_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    users = np.flatnonzero(np.diff(m["test"].indptr) > 0)
    np.savez(ctx.stage_dir / "test_per_user.npz", users=users, **per_user_test["model"])
    name = primary(ranking, config.evaluation.primary_metric)
    summary = {"primary_metric": name, "direction": "max", "validation": results["model"]["validation"][name],
               "test": results["model"]["test"][name]}
    summary.update({f"test_{b}": results[b]["test"][name] for b in ranking.baselines})
    if "lift" in metrics:
        summary["test_lift"] = metrics["lift"]["test"].get(f"lift_{name}")
    summary["line"] = (f"{name}: validation {summary['validation']:.4f} · test {summary['test']:.4f}"
                       + "".join(f" · {b} {summary[f'test_{b}']:.4f}" for b in ranking.baselines)
                       + (f" · lift {summary['test_lift']:.2f}×" if summary.get("test_lift") else ""))
    return {"outputs": {"metrics": "metrics.json", "per_user": "test_per_user.npz"}, "artifacts": ["metrics.json"],
            "metrics": flat, "summary": summary}


def champion_per_user(path, data, m, users: np.ndarray, ks: list[int]) -> dict[str, np.ndarray]:
    """The champion's per-user metrics on this run's test users, with this run's exclusions."""
    import pandas as pd
    import scipy.sparse as sp

    from trainpipe.registry.predict import load_packaged
    from trainpipe.evaluation.ranking_metrics import per_user_metrics

    champion = load_packaged(path).recommender
    # this run's item codes -> the champion's (unknown to it: dropped from the exclusions)
    to_champion = champion.item_index.get_indexer(pd.Index(pd.Series(data.item_ids).astype(str).to_numpy()))
    excl = m["exclude_test"][users].tocoo()
    ok = to_champion[excl.col] >= 0
    exclusions = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.float32), (excl.row[ok], to_champion[excl.col[ok]])),
                               shape=(len(users), len(champion.item_ids)))
    top, _, _ = champion.top_codes(pd.Series(data.user_ids[users]).astype(str).to_numpy(), max(ks), exclusions)
    back = pd.Index(pd.Series(data.item_ids).astype(str).to_numpy()).get_indexer(
        champion.item_ids[np.maximum(top, 0)].ravel()).reshape(top.shape)
    back[top < 0] = -1
    return per_user_metrics(back, m["test"][users], ks)


def gate_champion(ctx, registry, name: str, version: str, metric: str) -> tuple[dict, list[dict]]:
    """(record, checks) of the champion comparison, or a failed check when the champion cannot score."""
    from trainpipe.evaluation import gates as g
    from trainpipe.ranking.stages import load_split, split_matrices
    from trainpipe.stages.gate import champion_package, failed_comparison

    config = ctx.config
    with np.load(ctx.upstream("evaluate") / "test_per_user.npz") as f:
        users, new = f["users"], f[metric]
    path, problem = champion_package(registry, name, version)
    if problem:
        record, check = failed_comparison(version, problem)
        return record, [check]
    try:
        data, parts = load_split(ctx)
        old = champion_per_user(path, data, split_matrices(data, parts), users, config.ranking.k)[metric]
    except Exception as exc:  # an old package of another task or layout: the comparison fails, said why
        record, check = failed_comparison(version, "the champion cannot rank this run's test users: "
                                          f"{str(exc).strip().splitlines()[0][:300]}")
        return record, [check]
    record, checks = g.champion_check("ranking", metric, np.zeros(len(users)), new, old, config.gates.champion, 0.5,
                                      version)
    return {"status": "compared", **record}, checks


def gate(ctx) -> dict:
    """Test size and thresholds on evaluate's flat metrics (lifts included), then the champion on the same
    test users."""
    from trainpipe.evaluation import gates as g
    from trainpipe.stages.gate import current_champion, decide

    config, gates = ctx.config, ctx.config.gates
    metrics = ctx.manifest("evaluate")["metrics"]
    with np.load(ctx.upstream("evaluate") / "test_per_user.npz") as f:
        test_users = len(f["users"])
    checks = g.size_checks(test_users, gates.min_test_rows, "test users") + g.threshold_checks(metrics, gates)
    decision: dict = {"checks": checks, "slices": [], "champion": None, "champion_version": None}
    champion = current_champion(ctx, decision)
    if champion is not None:
        registry, name, version = champion
        metric = gates.champion.metric or primary(config.ranking, config.evaluation.primary_metric)
        decision["champion"], champion_checks = gate_champion(ctx, registry, name, version, metric)
        checks.extend(champion_checks)
    return decide(ctx, decision, checks)
