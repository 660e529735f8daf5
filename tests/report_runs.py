"""Small real runs for the report tests, made once per test session and shared (in-process pipelines).

Each kind is a run of the real pipeline on data scikit-learn bundles or a seeded generator, in one
store, so the report is tested on the files the stages really write.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trainpipe.config import config_from_dict
from trainpipe.errors import TrainpipeError
from trainpipe.pipeline.driver import run_pipeline
from trainpipe.store import Store


def _data(folder: Path) -> dict[str, Path]:
    from sklearn.datasets import load_diabetes, load_wine

    from trainpipe.tools.datasets import breast_cancer
    from trainpipe.ranking.generate import synthetic_interactions

    paths = {name: folder / f"{name}.parquet" for name in ("bc", "wine", "diabetes", "interactions")}
    if not paths["bc"].exists():
        breast_cancer().to_parquet(paths["bc"], index=False)
        wine = load_wine(as_frame=True).frame
        wine["target"] = wine["target"].map({0: "barolo", 1: "grignolino", 2: "barbera"})
        wine.to_parquet(paths["wine"], index=False)
        load_diabetes(as_frame=True, scaled=False).frame.to_parquet(paths["diabetes"], index=False)
        synthetic_interactions(150, 80, 2_500, seed=3).frame.to_parquet(paths["interactions"], index=False)
    return paths


class ReportRuns:
    """`get(kind)` → the run folder of a finished (or deliberately failed) run of that kind."""

    def __init__(self, root: Path):
        self.root, self.store = root, root / "store"
        self._runs: dict[str, Path] = {}

    def config(self, kind: str) -> dict:
        data = _data(self.root)
        base = {"store": str(self.store), "seed": 3, "training": {"threads": 1}}
        if kind in ("binary", "gate_failed", "validate_failed", "tuned"):
            doc = {**base, "name": "bc", "task": "binary",
                   "data": {"path": str(data["bc"]), "target": "diagnosis", "positive_class": "malignant"},
                   "model": {"type": "xgboost", "params": {"n_estimators": 30, "max_depth": 3}},
                   "training": {"threads": 1, "early_stopping_rounds": 10, "train_metrics": True},
                   "gates": {"slices": {"numeric": {"mean_radius": 3}}},
                   "tracking": {"uri": None}}
            if kind == "gate_failed":
                doc["gates"] = {**doc["gates"], "max": {"test_log_loss": 0.0001}}
            if kind == "validate_failed":
                doc["schema"] = {"min_rows": 100_000}
            if kind == "tuned":
                doc["name"] = "bc-tuned"
                doc["tuning"] = {"enabled": True, "n_trials": 4, "workers": 1}
            return doc
        if kind == "multiclass":
            return {**base, "name": "wine", "task": "multiclass", "data": {"path": str(data["wine"]), "target": "target"},
                    "model": {"type": "torch_mlp", "params": {"epochs": 6, "batch_size": 32, "hidden_dims": [16]}}}
        if kind == "regression":
            return {**base, "name": "diabetes", "task": "regression",
                    "data": {"path": str(data["diabetes"]), "target": "target"},
                    "model": {"type": "lightgbm", "params": {"n_estimators": 40}},
                    "training": {"threads": 1, "early_stopping_rounds": 10, "train_metrics": True}}
        if kind == "ranking":
            return {**base, "name": "rank", "task": "ranking", "data": {"path": str(data["interactions"])},
                    "ranking": {"user": "user_id", "item": "item_id", "time": "timestamp", "k": [5, 10, 20],
                                "baselines": ["popularity", "random"]},
                    "model": {"type": "two_tower", "params": {"epochs": 2, "batch_size": 256, "embedding_dim": 8}}}
        raise KeyError(kind)

    def get(self, kind: str) -> Path:
        if kind not in self._runs:
            if kind == "gate_failed":
                self.get("binary")  # the champion it is compared with
            config = config_from_dict(self.config(kind))
            run_id = f"report-{kind}"
            try:
                run_pipeline(config, Store.locate(config.store), run_id=run_id)
            except TrainpipeError:
                if kind not in ("gate_failed", "validate_failed"):
                    raise
            self._runs[kind] = self.store / "runs" / run_id
        return self._runs[kind]

    def table(self, kind: str) -> pd.DataFrame:
        return pd.read_parquet(self.config(kind)["data"]["path"])
