"""Config section `ranking`: which columns hold users, items, time and ratings; splits; K; baselines.

Defined here, next to the code that reads it; config.py only attaches it to PipelineConfig and asks
`config_problems` for the cross-section checks (data.target, gates, primary metric).
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PER_K = ("recall", "ndcg", "hit_rate", "coverage", "popularity_bias")
LIFTED = ("recall", "ndcg", "hit_rate")  # lift over the popularity baseline is reported for these (and mrr)
Baseline = Literal["popularity", "random", "svd"]
BASELINES: tuple[Baseline, ...] = ("popularity", "random", "svd")


class FeatureTable(BaseModel):
    """A table of user or item features joined to the interactions by id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="CSV or Parquet file, one row per id.")
    id: str = Field(description="Column holding the user (or item) id.")
    numeric: list[str] = Field(default_factory=list, description="Numeric feature columns (standardised; missing -> 0).")
    categorical: list[str] = Field(default_factory=list, description="Categorical feature columns (learned embeddings; "
                                   "unseen or missing values share one code).")

    @model_validator(mode="after")
    def _some_columns(self) -> FeatureTable:
        if not self.numeric and not self.categorical:
            raise ValueError("name at least one numeric or categorical feature column")
        return self


class RankingSplit(BaseModel):
    """How interactions are held out for validation and test."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["leave_last", "time", "random"] = Field(
        "leave_last", description="leave_last: each user's newest interactions (by ranking.time, else row order) are "
        "test, the ones before validation; time: one global time cut; random: random interactions per user.")
    test_per_user: int = Field(1, ge=1, description="leave_last/random: interactions per user held out for test.")
    validation_per_user: int = Field(1, ge=1, description="leave_last/random: interactions per user for validation.")
    validation_fraction: float = Field(0.1, gt=0, lt=0.5, description="time: share of interactions (by time) for "
                                       "validation, just before test.")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="time: newest share of interactions for test.")
    seed: int | None = Field(None, description="random: defaults to the top-level seed.")


class RankingConfig(BaseModel):
    """Config section `ranking` (task: ranking)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str = Field(description="Column holding the user id.")
    item: str = Field(description="Column holding the item id.")
    time: str | None = Field(None, description="Timestamp column (numbers or dates); orders each user's history.")
    rating: str | None = Field(None, description="Rating column; with positive_threshold only ratings at or above it "
                               "count as positive interactions.")
    positive_threshold: float | None = Field(None, description="Ratings >= this are positives; others are dropped.")
    weight: str | None = Field(None, description="Column of per-interaction weights for the training loss.")
    duplicates: Literal["last", "first", "keep", "error"] = Field(
        "last", description="Repeated (user, item) pairs: keep the last (by time) or first one, keep all, or fail.")
    min_user_interactions: int = Field(1, ge=1, description="Drop users with fewer interactions (repeated with "
                                       "min_item_interactions until both hold).")
    min_item_interactions: int = Field(1, ge=1, description="Drop items with fewer interactions.")
    user_features: FeatureTable | None = Field(None, description="Optional user features, joined by id.")
    item_features: FeatureTable | None = Field(None, description="Optional item features, joined by id.")
    split: RankingSplit = Field(default_factory=RankingSplit)
    k: list[int] = Field(default_factory=lambda: [10, 20, 50], min_length=1,
                         description="Cut-offs of Recall/NDCG/HitRate/coverage/popularity bias; the first is the headline.")
    baselines: list[Baseline] = Field(
        default_factory=lambda: list(BASELINES), description="Baselines scored in the same evaluate stage.")
    svd_factors: int = Field(64, ge=1, description="PureSVD baseline: factors of the truncated SVD.")
    eval_batch_users: int = Field(1024, ge=1, description="Users scored per batch against every item (memory: this × items floats).")
    validation_users: int | None = Field(5000, ge=1, description="Per-epoch validation (early stopping) on a seeded "
                                         "sample of this many users; null: all. evaluate always uses all.")

    @model_validator(mode="after")
    def _check(self) -> RankingConfig:
        if self.positive_threshold is not None and not self.rating:
            raise ValueError("ranking.positive_threshold needs ranking.rating (the column it applies to)")
        if any(k < 1 for k in self.k):
            raise ValueError("ranking.k: every cut-off must be at least 1")
        if len(set(self.k)) != len(self.k):
            raise ValueError("ranking.k: cut-offs must be distinct")
        return self

    @property
    def headline_k(self) -> int:
        return self.k[0]


def metric_names(config: RankingConfig) -> list[str]:
    """Every per-split metric evaluate reports for the model (and for each baseline)."""
    return [f"{m}_at_{k}" for k in config.k for m in PER_K] + ["mrr"]


def per_user_names(config: RankingConfig) -> list[str]:
    """Metrics that are means over users (a primary or champion metric must be one: it is compared per user)."""
    return [f"{m}_at_{k}" for k in config.k for m in LIFTED] + ["mrr"]


def lift_names(config: RankingConfig) -> list[str]:
    return [f"lift_{m}_at_{k}" for k in config.k for m in LIFTED] + ["lift_mrr"]


def known_gate_metrics(config: RankingConfig) -> list[str]:
    per_split = metric_names(config) + lift_names(config)
    per_split += [f"{b}_{m}" for b in config.baselines for m in metric_names(config)]
    return [f"{s}_{m}" for s in ("validation", "test") for m in per_split]


def primary(config: RankingConfig, chosen: str | None) -> str:
    return chosen or f"recall_at_{config.headline_k}"


def config_problems(pipeline: Any) -> list[str]:
    """Cross-section checks of a ranking pipeline, one line each, naming the key."""
    problems: list[str] = []
    ranking = pipeline.ranking
    if ranking is None:
        return ["ranking: task ranking needs a `ranking` section naming at least ranking.user and ranking.item"]
    if pipeline.data.target is not None:
        problems.append("data.target: not used by task ranking (the ranking section names the user and item columns); "
                        "remove it")
    for section in ("split", "features"):
        # set and not the default: a run's own config.yaml lists every section, defaults included, and must
        # load again for `--resume` and `trainpipe stage ... --run`
        if section in pipeline.model_fields_set and getattr(pipeline, section) != type(getattr(pipeline, section))():
            problems.append(f"{section}: not used by task ranking; use ranking.split and ranking.user_features/"
                            "ranking.item_features")
    per_user = per_user_names(ranking)
    chosen = pipeline.evaluation.primary_metric
    if chosen and chosen not in per_user:
        close = difflib.get_close_matches(chosen, per_user, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"evaluation.primary_metric: {chosen!r} is not a ranking metric for ranking.k {ranking.k}{hint}")
    names = known_gate_metrics(ranking)
    for bound in ("min", "max"):
        for name in getattr(pipeline.gates, bound):
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"gates.{bound}.{name}: not a ranking metric{hint}; e.g. test_recall_at_{ranking.headline_k}"
                                f" or test_lift_recall_at_{ranking.headline_k}")
    if getattr(getattr(pipeline, "tuning", None), "enabled", False):
        problems.append("tuning.enabled: tuning is not supported for task ranking yet; tune model.params by hand")
    if pipeline.gates.slices.columns or pipeline.gates.slices.numeric:
        problems.append("gates.slices: not supported for task ranking")
    champion_metric = pipeline.gates.champion.metric
    if champion_metric and champion_metric not in per_user:
        problems.append(f"gates.champion.metric: {champion_metric!r} is not a ranking metric; choose one of "
                        f"{', '.join(per_user)}")
    if pipeline.gates.beat_baselines and not ranking.baselines:
        problems.append("gates.beat_baselines: needs at least one baseline in ranking.baselines (e.g. [popularity, "
                        "svd])")
    if "popularity" not in ranking.baselines and any("_lift_" in n for n in [*pipeline.gates.min, *pipeline.gates.max]):
        problems.append("gates: a lift gate needs the popularity baseline in ranking.baselines")
    return problems
