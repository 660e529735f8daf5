"""Model families by registered name, imported lazily so `trainpipe --help` stays fast."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trainpipe.engine.callbacks import IMPORT_PATH
from trainpipe.engine.config import CheckpointConfig, DistributedConfig
from trainpipe.errors import MissingDependency, ModelError

# name -> (module, class, the pip extra that provides its library)
FAMILIES: dict[str, tuple[str, str, str | None]] = {
    "xgboost": ("trainpipe.models.gbdt", "XGBoostFamily", "trainpipe[xgboost-cpu]"),
    "lightgbm": ("trainpipe.models.gbdt", "LightGBMFamily", "trainpipe[lightgbm]"),
    "sklearn": ("trainpipe.models.sklearn", "SklearnFamily", None),
    "torch_mlp": ("trainpipe.models.tabular", "TorchMLPFamily", "trainpipe[torch]"),
}
# task ranking: families trained on interactions, not on the features matrix (outside the tabular contract suite)
RANKING_FAMILIES: dict[str, tuple[str, str, str | None]] = {
    "two_tower": ("trainpipe.models.two_tower", "TwoTowerFamily", "trainpipe[torch]"),
}
ALL_FAMILIES = {**FAMILIES, **RANKING_FAMILIES}


class ModelConfig(BaseModel):
    """Config section `model`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field("xgboost", description=f"Model family: one of {sorted(FAMILIES)}; task ranking: "
                      f"{', '.join(sorted(RANKING_FAMILIES))} (its default).")
    params: dict[str, Any] = Field(default_factory=dict, description="Family parameters (the library's own names).")
    estimator: str | None = Field(None, description="type sklearn: import path, e.g. sklearn.ensemble.RandomForestClassifier.")


class TrainingConfig(BaseModel):
    """Config section `training`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    early_stopping_rounds: int | None = Field(50, ge=1, description="Stop after this many rounds without "
                                              "validation improvement (boosters); null trains every round.")
    threads: int | None = Field(None, ge=1, description="CPU threads for training; default: all cores.")
    train_metrics: bool = Field(False, description="Also log per-iteration metrics on the training split (for "
                                "loss curves); costs ~40% more xgboost time on large data.")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    callbacks: list[str] = Field(default_factory=list, description="torch families: import paths "
                                 "(`package.module:Class`) of training callbacks, each built without arguments in the "
                                 "training process; the loop calls their optional on_step_end(trainer), "
                                 "on_epoch_end(trainer, values) (true: stop) and on_checkpoint(trainer, path) "
                                 "(docs/operations.md, Callbacks).")

    @field_validator("callbacks")
    @classmethod
    def _import_paths(cls, paths: list[str]) -> list[str]:
        bad = [p for p in paths if not IMPORT_PATH.match(p)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an import path like mypackage.callbacks:MyCallback")
        return paths


def get_family(name: str):
    if name not in ALL_FAMILIES:
        close = difflib.get_close_matches(name, ALL_FAMILIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(f"model.type: unknown model type {name!r}{hint}; choose one of {sorted(ALL_FAMILIES)}",
                         key="model.type")
    module_name, class_name, extra = ALL_FAMILIES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependency(f"model.type: {name} needs {exc.name or 'a library'} that is not installed; "
                                f"pip install '{extra}'", key="model.type") from exc
    return getattr(module, class_name)


def build_family(config: ModelConfig, task: str, n_classes: int, seed: int, threads: int):
    return get_family(config.type)(task, dict(config.params), n_classes, seed, threads, estimator=config.estimator)


def load_family(directory) -> Any:
    import json
    from pathlib import Path

    meta = json.loads((Path(directory) / "family.json").read_text())
    return get_family(meta["family"]).load(Path(directory))
