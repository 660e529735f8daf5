"""Model families by registered name, imported lazily so `trainpipe --help` stays fast.

A family is one module (a class following models/base.py's ModelFamily protocol) and one line here; a family
outside trainpipe registers with `register_family` or the `trainpipe.families` entry-point group.
"""

from __future__ import annotations

import difflib
import importlib
from pathlib import Path
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

    type: str = Field("xgboost", description=f"Model family: one of {sorted(FAMILIES)}, or a family an installed "
                      "plugin registers (entry-point group trainpipe.families, docs/architecture.md); task ranking: "
                      f"{', '.join(sorted(RANKING_FAMILIES))} (its default).")
    params: dict[str, Any] = Field(default_factory=dict, description="Family parameters (the library's own names).")
    estimator: str | None = Field(None, description="type sklearn: import path, e.g. sklearn.ensemble.RandomForestClassifier.")


class TrainingConfig(BaseModel):
    """Config section `training`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    early_stopping_rounds: int | None = Field(50, ge=1, description="Stop after this many rounds without "
                                              "validation improvement (boosters); null trains every round.")
    threads: int | None = Field(None, ge=1, description="CPU threads for training; default: OMP_NUM_THREADS when set, else all cores.")
    train_metrics: bool = Field(False, description="Also log per-iteration metrics on the training split (for "
                                "loss curves); costs ~40% more xgboost time on large data. Boosters evaluate the "
                                "validation split every round only for early stopping, tuning, the progress line or "
                                "this key.")
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


ENTRY_POINT_GROUP = "trainpipe.families"  # an installed plugin distribution: `name = "package.module:Class"`
_CLASSES: dict[str, type] = {}  # families registered as class objects (register_family), by name


def register_family(name: str, family: type | str, extra: str | None = None, *, ranking: bool = False) -> None:
    """Make `model.type: NAME` mean `family`: a ModelFamily class, or its import path `package.module:Class`.

    For a family outside trainpipe, in this process (a notebook, a test, a script that then calls the pipeline).
    A family that `trainpipe` commands in other processes must find (`trainpipe run`, `predict` of its packaged
    model) is registered by its distribution instead, under the `trainpipe.families` entry-point group:

        [project.entry-points."trainpipe.families"]
        my_family = "my_package.families:MyFamily"

    extra: the pip requirement that provides its library, named in the error when it cannot be imported.
    ranking: a family trained on interactions (task ranking), not on the features matrix.
    """
    if isinstance(family, str):
        module, _, cls_name = family.partition(":")
        if not module or not cls_name:
            raise ModelError(f"model.type: {family!r} is not an import path like package.module:Class", key="model.type")
        entry = (module, cls_name, extra)
    else:
        entry = (family.__module__, family.__qualname__, extra)
    unregister_family(name)
    if not isinstance(family, str):
        _CLASSES[name] = family
    (RANKING_FAMILIES if ranking else FAMILIES)[name] = entry
    ALL_FAMILIES[name] = entry


def unregister_family(name: str) -> None:
    """Forget a family registered with register_family (a test's clean-up)."""
    for table in (FAMILIES, RANKING_FAMILIES, ALL_FAMILIES):
        table.pop(name, None)
    _CLASSES.pop(name, None)


def _plugins() -> dict[str, str]:
    """name -> "package.module:Class" of the families installed distributions declare (entry points)."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _entry(name: str) -> tuple[str, str, str | None] | None:
    if name in ALL_FAMILIES:
        return ALL_FAMILIES[name]
    plugin = _plugins().get(name)
    if plugin is None:
        return None
    module, _, cls_name = plugin.partition(":")
    return module, cls_name, None


def is_family(name: str) -> bool:
    return _entry(name) is not None


def is_ranking_family(name: str) -> bool:
    """Task ranking takes these; plugin (entry-point) families are tabular."""
    return name in RANKING_FAMILIES


def family_names() -> list[str]:
    """Every family `model.type` can name: trainpipe's, registered ones and installed plugins."""
    return sorted({*ALL_FAMILIES, *_plugins()})


def can_stream(name: str) -> bool:
    """Whether the family trains from matrices larger than memory (a `fit_stream` method: data.streaming)."""
    return hasattr(get_family(name), "fit_stream")


def get_family(name: str) -> Any:
    """The family class `model.type: NAME` means, imported now (its library with it)."""
    entry = _entry(name)
    if entry is None:
        names = family_names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(f"model.type: unknown model type {name!r}{hint}; choose one of {names}", key="model.type")
    if name in _CLASSES:
        return _CLASSES[name]
    module_name, class_name, extra = entry
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        need = f"pip install '{extra}'" if extra else "install the package that provides it"
        raise MissingDependency(f"model.type: {name} needs {exc.name or 'a library'} that is not installed; {need}",
                                key="model.type") from exc
    family = getattr(module, class_name, None)
    if family is None:
        raise ModelError(f"model.type: {name} names {module_name}:{class_name}, which does not exist", key="model.type")
    return family


def build_family(config: ModelConfig, task: str, n_classes: int, seed: int, threads: int) -> Any:
    return get_family(config.type)(task, dict(config.params), n_classes, seed, threads, estimator=config.estimator)


def load_family(directory: str | Path) -> Any:
    import json

    meta = json.loads((Path(directory) / "family.json").read_text())
    return get_family(meta["family"]).load(Path(directory))
