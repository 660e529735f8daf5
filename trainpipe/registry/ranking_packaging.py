"""The packaged recommender: an MLflow pyfunc (models from code) around ranking.serving.Recommender.

Input: a `user` column (string ids), optionally a `history` column (lists of item ids to exclude)
and the user-feature columns (for users the model has not seen). Params: `k` (default 10) and
`exclude_seen` (default true: items the user interacted with in the training data are not
recommended). Output: one row per (user, rank) with item, score and source (model, features or
popularity). Its SHA-256 is computed like the tabular package's, so the registry verifies it the
same way.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from trainpipe.registry.packaging import pinned_requirements_unchecked, requirements, tree_sha256

try:  # imported lazily by the register stage and the pyfunc entry; --help never imports mlflow
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover
    PythonModel = object  # type: ignore[assignment,misc]

ENTRY = Path(__file__).with_name("ranking_pyfunc_entry.py")
RANKING_BASE = ("mlflow", "pandas", "numpy", "scipy")  # what the recommender loads besides its family's library


class RecommenderModel(PythonModel):
    @property
    def meta(self) -> dict:
        """`trainpipe predict` reads a tabular package's meta first: a ranking package answers with one line."""
        from trainpipe.errors import RegistryError

        raise RegistryError("model: this is a ranking model (a recommender); use `trainpipe recommend`, not "
                            "`trainpipe predict`", key="model")

    def load_context(self, context: Any) -> None:
        from trainpipe.registry.serving import Recommender

        self.recommender = Recommender(Path(context.artifacts["recommender"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        params = params or {}
        history = frame["history"].tolist() if "history" in frame.columns else None
        return self.recommender.recommend(frame["user"], k=int(params.get("k", 10)),
                                          exclude_seen=bool(params.get("exclude_seen", True)), history=history,
                                          features=frame)


def build_ranking_package(target: Path, recommender_dir: Path, feature_inputs: list[tuple[str, str]],
                          example_users: list[str], family: str) -> str:
    """Save the pyfunc folder at `target`; returns its SHA-256."""
    import logging

    from mlflow.models import ModelSignature
    from mlflow.pyfunc import save_model
    from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bar while copying artifacts
    inputs = Schema([ColSpec("string", "user", required=True), ColSpec(Array(DataType.string), "history", required=False),
                     *(ColSpec(kind, name, required=False) for name, kind in feature_inputs)])
    outputs = Schema([ColSpec("string", "user"), ColSpec("long", "rank"), ColSpec("string", "item"),
                      ColSpec("double", "score"), ColSpec("string", "source")])
    params = ParamSchema([ParamSpec("k", "long", 10), ParamSpec("exclude_seen", "boolean", True)])
    if target.exists():
        shutil.rmtree(target)
    with warnings.catch_warnings(), pinned_requirements_unchecked():
        warnings.simplefilter("ignore")
        save_model(str(target), python_model=str(ENTRY), artifacts={"recommender": str(recommender_dir)},
                   signature=ModelSignature(inputs=inputs, outputs=outputs, params=params),
                   input_example=pd.DataFrame({"user": [str(u) for u in example_users]}),
                   pip_requirements=requirements(family, RANKING_BASE))
    return tree_sha256(target)
