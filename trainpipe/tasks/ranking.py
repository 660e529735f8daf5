"""Task ranking: interactions of users and items in, a retrieval model and top-K recommendations out.

validate cleans the interactions (data/interactions.py) and saves them encoded; split holds out
interactions per user or by time (data/ranking_split.py); features aligns the optional user/item feature
tables to the id codes (data/side_features.py); a ranking family (two_tower) fits on (user, item, weight)
codes; evaluate scores the model and the baselines on the same users with the same exclusions over the whole
catalogue (evaluation/ranking_metrics.py, evaluation/baselines.py); the champion is compared per user; the
package is a recommender pyfunc (registry/ranking_packaging.py). The served "seen" history is every
interaction the model's data holds (train, validation and test): at serving time all of it is the user's past.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from trainpipe.data.interactions import Interactions
from trainpipe.ranking.config import LIFTED, per_user_names, primary
from trainpipe.tasks.base import (ChampionLineage, ChampionScores, Evaluation, FitPlan, Fitted, Package, RunView, SplitParts,
                                  TaskOutput, Validation)

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig
    from trainpipe.models.base import FitContext
    from trainpipe.ranking.config import RankingConfig

SPLITS = ("train", "validation", "test")
HELD_OUT = ("validation", "test")


class RankingTask:
    name: ClassVar[str] = "ranking"
    drift_skipped: ClassVar[str | None] = ("not measured for task ranking yet (interactions have no per-column "
                                           "reference summary)")

    def __init__(self, config: PipelineConfig):
        assert config.ranking is not None, "task ranking has a ranking section (checked when the config loads)"
        self.config = config
        self.ranking: RankingConfig = config.ranking

    def primary_metric(self) -> tuple[str, str]:
        return primary(self.ranking, self.config.evaluation.primary_metric), "max"

    # -- ingest, validate -----------------------------------------------------------------------
    def check_columns(self, frame: pd.DataFrame) -> None:
        from trainpipe.data.interactions import require_columns

        require_columns(frame, self.ranking)

    def check_data(self, frame: pd.DataFrame) -> dict:
        """The interactions checks and the cleaning counts validate would report."""
        from trainpipe.data.interactions import prepare

        _, report = prepare(frame, self.ranking)
        return {**report, "errors": [], "warnings": [{"message": w} for w in report["warnings"]],
                "passed": True, "status": "passed", "columns_checked": 0}

    def validate(self, run: RunView) -> Validation:
        from trainpipe.data.interactions import prepare

        data, report = prepare(run.table(), self.ranking)
        data.save(run.stage_dir)
        report.update(passed=True, status="passed", errors=[])
        dropped = report["dropped"]
        return Validation(report=report, warnings=list(report["warnings"]), output=TaskOutput(
            outputs={"interactions": "interactions.npz"},
            metrics={"interactions": float(len(data)), "users": float(data.n_users), "items": float(data.n_items)},
            summary={"interactions": len(data), "users": data.n_users, "items": data.n_items,
                     "dropped": {k: v for k, v in dropped.items() if v},
                     "line": f"{len(data):,} interactions · {data.n_users:,} users · {data.n_items:,} items"
                             + "".join(f" · dropped {v:,} ({k.replace('_', ' ')})" for k, v in dropped.items() if v)}))

    # -- split, features -------------------------------------------------------------------------
    def split(self, run: RunView) -> SplitParts:
        from trainpipe.data.ranking_split import make_split

        config = self.ranking.split
        data = Interactions.load(run.upstream("validate"))
        seed = config.seed if config.seed is not None else self.config.seed
        parts, record = make_split(data, config, seed)
        record.update(seed=seed, hash=None)  # the hash is filled in by the stage
        return SplitParts(parts, record, {"strategy": config.strategy, **record["sizes"]})

    def features(self, run: RunView) -> TaskOutput:
        """The user and item feature tables, encoded and aligned to the interaction id codes."""
        from trainpipe.data.side_features import aligned_features

        ranking = self.ranking
        data = Interactions.load(run.upstream("validate"))
        info: dict = {"user": None, "item": None}
        for side, table, ids in (("user", ranking.user_features, data.user_ids),
                                 ("item", ranking.item_features, data.item_ids)):
            if table is None:
                continue
            num, cat, encoder, report = aligned_features(table, f"{side}_features", ids)
            np.savez(run.stage_dir / f"{side}_features.npz", num=num, cat=cat)
            info[side] = {"encoder": encoder.state_dict(), "cardinalities": encoder.cardinalities, "report": report}
        (run.stage_dir / "features.json").write_text(json.dumps(info, indent=2, default=str))
        summary: dict[str, Any] = {side: (None if info[side] is None else
                          {k: info[side]["report"][k] for k in ("matched", "without_features")})
                   for side in ("user", "item")}
        summary["line"] = " · ".join(f"{side} features for {s['matched']:,} ids ({s['without_features']:,} without)"
                                     for side, s in summary.items() if s) or "ids only (no user/item feature tables)"
        return TaskOutput(outputs={"info": "features.json"}, artifacts=["features.json"], summary=summary)

    # -- train, evaluate -------------------------------------------------------------------------
    def n_classes(self, run: RunView) -> int:
        return 0

    def fit(self, run: RunView, model: Any, plan: FitPlan, context: FitContext) -> Fitted:
        from trainpipe.models.two_tower import RankingData

        ranking = self.ranking
        data, parts = load_split(run)
        m = split_matrices(data, parts)
        side = load_side_features(run)
        val_users = np.flatnonzero(np.diff(m["validation"].indptr) > 0)
        if ranking.validation_users and len(val_users) > ranking.validation_users:
            val_users = np.sort(np.random.default_rng(self.config.seed).choice(val_users, ranking.validation_users,
                                                                               replace=False))
        idx = parts["train"]
        user, item = side["user"], side["item"]
        payload = RankingData(
            user=data.user[idx], item=data.item[idx], weight=data.weight[idx], n_users=data.n_users,
            n_items=data.n_items,
            user_num=user[0] if user else None, user_cat=user[1] if user else None, user_cards=user[2] if user else None,
            item_num=item[0] if item else None, item_cat=item[1] if item else None, item_cards=item[2] if item else None,
            validation_relevant=m["validation"], exclude=m["exclude_validation"], ks=tuple(ranking.k),
            validation_users=val_users, batch_users=ranking.eval_batch_users)
        started = time.perf_counter()
        result = model.fit(payload, early_stopping_rounds=plan.early_stopping_rounds, context=context)
        seconds = time.perf_counter() - started
        per_s = len(idx) * result.iterations / max(seconds, 1e-9)
        return Fitted(result, seconds, metrics={"train_interactions_per_s": per_s},
                      summary={"interactions_per_s": round(per_s)})

    def evaluate(self, run: RunView) -> Evaluation:
        """The model and the baselines on the same users, exclusions and streamed top-K; lift over popularity."""
        from trainpipe.evaluation import baselines
        from trainpipe.evaluation.ranking_metrics import evaluate as score

        config, ranking = self.config, self.ranking
        data, parts = load_split(run)
        m = split_matrices(data, parts)
        popularity = np.asarray(m["train"].sum(axis=0)).ravel()
        scorers: dict[str, Any] = {"model": _model_scorer(run.upstream("train") / "model")}
        seconds: dict[str, float] = {}
        for baseline in ranking.baselines:
            began = time.perf_counter()
            scorers[baseline] = baselines.build(baseline, m["train"], ranking, config.seed)
            seconds[f"fit_{baseline}"] = time.perf_counter() - began
        results: dict[str, dict] = {name: {} for name in scorers}
        per_user_test: dict[str, dict[str, np.ndarray]] = {}
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
        users = np.flatnonzero(np.diff(m["test"].indptr) > 0)
        np.savez(run.stage_dir / "test_per_user.npz", users=users,
                 **per_user_test["model"])  # type: ignore[arg-type]  # numpy types **kwds as allow_pickle
        name, direction = self.primary_metric()
        metrics["beaten_by"] = beaten_by(results, name, list(ranking.baselines))
        summary = {"primary_metric": name, "direction": direction, "validation": results["model"]["validation"][name],
                   "test": results["model"]["test"][name]}
        summary.update({f"test_{b}": results[b]["test"][name] for b in ranking.baselines})
        summary["beaten_by"] = {split: [row["baseline"] for row in rows] for split, rows in metrics["beaten_by"].items()}
        summary["warning_messages"] = beaten_messages(metrics["beaten_by"], name)  # printed under the stage line
        if "lift" in metrics:
            summary["test_lift"] = metrics["lift"]["test"].get(f"lift_{name}")
        summary["line"] = (f"{name}: validation {summary['validation']:.4f} · test {summary['test']:.4f}"
                           + "".join(f" · {b} {summary[f'test_{b}']:.4f}" for b in ranking.baselines)
                           + (f" · lift {summary['test_lift']:.2f}×" if summary.get("test_lift") else ""))
        return Evaluation(metrics, TaskOutput(outputs={"per_user": "test_per_user.npz"}, metrics=flat, summary=summary))

    # -- gate ------------------------------------------------------------------------------------
    def test_size(self, run: RunView) -> tuple[int, str]:
        with np.load(run.upstream("evaluate") / "test_per_user.npz") as f:
            return len(f["users"]), "test users"

    def baseline_checks(self, metrics: dict[str, float]) -> list[dict]:
        """gates.beat_baselines: the model's test primary metric is at least the best baseline's."""
        from trainpipe.evaluation.gates import baseline_checks

        if not self.config.gates.beat_baselines:
            return []
        return baseline_checks(metrics, self.primary_metric()[0], list(self.ranking.baselines))

    def slice_checks(self, run: RunView, decision: dict) -> list[dict]:
        return []  # gates.slices is refused for task ranking when the config loads

    def champion_scores(self, run: RunView, package: Path, metric: str,
                        lineage: ChampionLineage) -> tuple[ChampionScores | None, str | None]:
        """The champion's per-user metric on this run's test users, with this run's exclusions. When the split is
        not the champion's, test interactions it trained or validated on are taken out of both models' relevant
        items and excluded from both rankings (a model is not credited for, or blamed on, what it trained on)."""
        from trainpipe.tasks.unseen import rows_record, same_split, seen_interactions, unmatched

        with np.load(run.upstream("evaluate") / "test_per_user.npz") as f:
            users, new = f["users"], f[metric]
        try:
            data, parts = load_split(run)
            m = split_matrices(data, parts)
            if same_split(run, lineage):
                rows = rows_record(len(users), None, "same split", f"the split of champion v{lineage.version}'s run")
            else:
                test = parts["test"]
                seen = seen_interactions(lineage, data.user_ids[data.user[test]], data.item_ids[data.item[test]])
                if isinstance(seen, str):
                    who = f"champion v{lineage.version}" + (f" (run {lineage.run_id})" if lineage.run_id else "")
                    rows = unmatched(len(users), who, seen)
                else:
                    users, new, m, rows = self.unseen_only(run, data, parts, seen, metric, len(users), lineage.version)
            rows["unit"] = "test users"
            old = (champion_per_user(package, data, m, users, self.ranking.k)[metric] if len(users)
                   else np.zeros(0))
        except Exception as exc:  # an old package of another task or layout: the comparison fails, said why
            return None, f"the champion cannot rank this run's test users: {str(exc).strip().splitlines()[0][:300]}"
        return ChampionScores(y=np.zeros(len(users)), challenger=new, champion=old, rows=rows), None

    def unseen_only(self, run: RunView, data: Interactions, parts: dict[str, np.ndarray], seen: np.ndarray,
                    metric: str, total: int, version: str) -> tuple[np.ndarray, np.ndarray, dict, dict]:
        """(test users left, the challenger's per-user metric re-scored for them, the matrices, the record) once
        the test interactions the champion saw are taken out of the relevant items and excluded from rankings."""
        from trainpipe.evaluation.ranking_metrics import evaluate as score
        from trainpipe.evaluation.ranking_metrics import interaction_matrix
        from trainpipe.tasks.unseen import rows_record

        test = parts["test"]
        m = split_matrices(data, {**parts, "test": test[~seen]})
        hidden = interaction_matrix(data.user[test[seen]], data.item[test[seen]], data.n_users, data.n_items)
        exclude = (m["exclude_test"] + hidden).tocsr()
        exclude.data[:] = 1.0
        m["exclude_test"] = exclude
        users = np.flatnonzero(np.diff(m["test"].indptr) > 0)
        new = np.zeros(0)
        if len(users):
            popularity = np.asarray(m["train"].sum(axis=0)).ravel()
            _, per_user = score(_model_scorer(run.upstream("train") / "model"), m["test"], exclude, self.ranking.k,
                                popularity, self.ranking.eval_batch_users, users)
            new = per_user[metric]
        record = rows_record(total, None, "user-item pairs", f"champion v{version} trained on another split: the "
                             f"{int(seen.sum())} test interaction(s) in its training or validation split are left out "
                             "of both models' relevant items and excluded from both rankings")
        record.update(compared=len(users), excluded=total - len(users), interactions_excluded=int(seen.sum()))
        return users, new, m, record

    # -- register --------------------------------------------------------------------------------
    def package(self, run: RunView, target: Path) -> Package:
        import shutil

        from trainpipe.evaluation.ranking_metrics import interaction_matrix
        from trainpipe.models import load_family
        from trainpipe.registry.ranking_packaging import build_ranking_package
        from trainpipe.registry.serving import write_recommender

        config, ranking = self.config, self.ranking
        data = Interactions.load(run.upstream("validate"))
        model_dir = run.upstream("train") / "model"
        U, V = load_family(model_dir).vectors()
        seen = interaction_matrix(data.user, data.item, data.n_users, data.n_items)
        encoder = (run.read_json("features", "features.json").get("user") or {}).get("encoder")
        parts = target.parent / ".recommender"
        write_recommender(parts, model_dir=model_dir, user_ids=data.user_ids, item_ids=data.item_ids, user_vectors=U,
                          item_vectors=V, seen=seen, popularity=np.bincount(data.item, minlength=data.n_items),
                          user_encoder=encoder,
                          meta={"task": "ranking", "family": config.model.type, "user_column": ranking.user,
                                "item_column": ranking.item, "k": ranking.k, "trainpipe_run_id": run.run_id})
        feature_inputs = [(c, "double") for c in (encoder or {}).get("numeric", [])]
        feature_inputs += [(c, "string") for c in (encoder or {}).get("categorical", [])]
        sha = build_ranking_package(target, parts, feature_inputs, [str(u) for u in data.user_ids[:3]], config.model.type)
        shutil.rmtree(parts, ignore_errors=True)

        metrics = run.read_json("evaluate", "metrics.json")
        card_metrics = {"validation": metrics["validation"], "test": metrics["test"]}
        for baseline, values in metrics.get("baselines", {}).items():
            for split in HELD_OUT:
                card_metrics[split].update({f"{baseline}_{k}": v for k, v in values[split].items()
                                            if k in per_user_names(ranking)})
        began = time.perf_counter()
        cis = _cis(run.upstream("evaluate") / "test_per_user.npz", per_user_names(ranking), config.seed)
        return Package(sha=sha, card_metrics=card_metrics, cis=cis, interval_seconds=round(time.perf_counter() - began, 3))

    def drift_table(self, run: RunView, split: str | None) -> None:
        return None


# -- what several stages read ----------------------------------------------------------------------


def load_split(run: RunView) -> tuple[Interactions, dict[str, np.ndarray]]:
    data = Interactions.load(run.upstream("validate"))
    with np.load(run.upstream("split") / "split.npz") as parts:
        return data, {name: parts[name] for name in SPLITS}


def split_matrices(data: Interactions, parts: dict[str, np.ndarray]) -> dict:
    """users × items CSR per split, plus what each held-out split excludes from ranking."""
    from trainpipe.evaluation.ranking_metrics import interaction_matrix

    m = {name: interaction_matrix(data.user[idx], data.item[idx], data.n_users, data.n_items)
         for name, idx in parts.items()}
    seen = (m["train"] + m["validation"]).tocsr()
    seen.data[:] = 1.0
    m["exclude_validation"], m["exclude_test"] = m["train"], seen
    return m


def load_side_features(run: RunView) -> dict:
    """{"user"|"item": (numeric, categorical, cardinalities) or None} from the features stage."""
    info = run.read_json("features", "features.json")
    out: dict[str, Any] = {}
    for side in ("user", "item"):
        if info.get(side) is None:
            out[side] = None
            continue
        with np.load(run.upstream("features") / f"{side}_features.npz") as f:
            out[side] = (f["num"], f["cat"], info[side]["cardinalities"])
    return out


def _model_scorer(model_dir: Path) -> Any:
    import torch

    from trainpipe.models import load_family

    from trainpipe.evaluation.ranking_metrics import DotScorer

    U, V = load_family(model_dir).vectors()
    return DotScorer(torch.from_numpy(U), torch.from_numpy(V))


def lifts(model: dict, popularity: dict, ks: list[int]) -> dict[str, float | None]:
    """model / popularity for the per-user metrics (None when popularity scores 0)."""
    names = [f"{m}_at_{k}" for k in ks for m in LIFTED] + ["mrr"]
    return {f"lift_{n}": (model[n] / popularity[n] if popularity.get(n) else None) for n in names}


def beaten_by(results: dict[str, dict], metric: str, baselines: list[str]) -> dict[str, list[dict]]:
    """Per held-out split, the baselines whose `metric` is above the model's (best first): a neural model
    that loses to PureSVD or most-popular on validation should be said out loud, not left in a table."""
    out = {}
    for split in HELD_OUT:
        model = results["model"][split][metric]
        above = [{"baseline": b, "baseline_value": results[b][split][metric], "model_value": model}
                 for b in baselines if results[b][split][metric] > model]
        out[split] = sorted(above, key=lambda row: -row["baseline_value"])
    return out


def beaten_messages(beaten: dict[str, list[dict]], metric: str) -> list[str]:
    return [f"{row['baseline']} beats the model on {split} {metric}: {row['baseline_value']:.4f} vs "
            f"{row['model_value']:.4f} (docs/ranking.md: Defaults on real data)"
            for split in HELD_OUT for row in beaten[split]]


def champion_per_user(path: Path, data: Interactions, m: dict, users: np.ndarray, ks: list[int]) -> dict[str, np.ndarray]:
    """The champion's per-user metrics on this run's test users, with this run's exclusions."""
    import scipy.sparse as sp

    from trainpipe.evaluation.ranking_metrics import per_user_metrics
    from trainpipe.registry.predict import load_packaged

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


def _cis(per_user_file: Path, names: list[str], seed: int, resamples: int = 200) -> dict[str, list[float]]:
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
