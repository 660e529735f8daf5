"""features: the model's inputs, from the training part only.

Tabular tasks: the ColumnTransformer fitted on train, saved with the transformed matrices (X_/y_<split>.npy);
ranking: the user and item feature tables aligned to the interaction ids. The outputs are the stage's, so the
pipeline's cache index makes an unchanged rerun reuse them (keyed by data fingerprint, split and features config).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainpipe.stages.context import StageContext, StageResult, StageSpec

if TYPE_CHECKING:
    from trainpipe.config import PipelineConfig


def line(s: dict) -> str:
    return (f"{s.get('numeric')} numeric + {s.get('categorical')} categorical"
            + (f" + {s['datetime']} datetime" if s.get("datetime") else "")
            + f" → {s.get('features_out')} features (impute {s.get('impute')}, scale {s.get('scale')}, "
            f"{s.get('encoding')})")


def feature_tables(config: PipelineConfig) -> list[str]:
    """The contents of the user/item feature tables (task ranking) the config names."""
    ranking = config.ranking
    tables = (ranking.user_features, ranking.item_features) if ranking is not None else ()
    return [t.path for t in tables if t is not None]


# model.type: the family's preprocessing needs (scaling, category codes) shape the matrices
SPEC = StageSpec("features", sections=("features", "data", "task", "model.type", "ranking"), upstream=("ingest", "split"),
                 line=line, files=feature_tables)


def run(ctx: StageContext) -> StageResult:
    out = ctx.task.features(ctx)
    return StageResult(outputs=out.outputs, artifacts=out.artifacts, metrics=out.metrics, summary=out.summary)
