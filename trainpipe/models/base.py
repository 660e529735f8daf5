"""The ModelFamily protocol: the handful of attributes and methods every model family implements.

A family is a plain class (composition, no base class to inherit); shared code lives in functions. What
the rest of trainpipe needs to know about a family is on the class, so a new family costs one module and
one registry line (models/__init__.py `FAMILIES`, or `register_family` / the `trainpipe.families` entry-point
group for a family outside trainpipe): how many iterations a parameter sets (tuning's retrain on
train + validation), what a packaged model must pip-install, what `trainpipe init --model` writes, and
which user code its cache key covers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

from trainpipe.engine.callbacks import WatchFactory
from trainpipe.engine.config import CheckpointConfig, DistributedConfig
from trainpipe.monitoring.cost import BudgetStop

# Called once per iteration (boosting round, epoch, CV fold) with that iteration's values, e.g.
# {"validation_log_loss": 0.31}, named as trainpipe names the final metrics (gbdt.METRIC_NAMES maps the
# libraries' names). Returning True asks the family to stop (pruning).
ReportFn = Callable[[int, dict[str, float]], bool]


@dataclass(frozen=True)
class PreprocessingNeeds:
    """What `auto` preprocessing should do for this family."""

    tree_model: bool  # no scaling; categories may be ordinal codes
    handles_missing: bool  # NaN can be passed straight through
    # `auto` categories become integer codes (unknown/missing: -1) for learned embeddings; the features
    # stage records which matrix columns they are and their cardinalities (FitContext.categorical).
    categorical_codes: bool = False
    # Whether the library can split integer-coded columns as categories (xgboost enable_categorical, LightGBM
    # categorical_feature; FitContext.categorical says which columns): "no"; "available" (on request:
    # features.categorical.encoding native); "default" (`auto` encoding gives native). Which one is the default is
    # measured per family (benchmarks/bench_categoricals.py), not assumed.
    native_categoricals: Literal["no", "available", "default"] = "no"


@dataclass(frozen=True)
class ScaffoldDefaults:
    """What `trainpipe init --model NAME` writes for a family: only what a first run needs beyond the family's own
    defaults, and nothing its default search space covers (`trainpipe tune` then searches all of it)."""

    params: dict[str, tuple[Any, str]]  # model.params: name -> (value, comment)
    early_stopping_rounds: tuple[int, str] | None  # (value, comment); None: the family stops by its own params
    estimator: dict[str, str] | None = None  # model.estimator by task kind: {"regression": ..., "classification": ...}


@dataclass
class FitContext:
    """What the train stage knows beyond the matrices, passed to every family's `fit`; each uses what applies
    (torch: all of it, through trainpipe.engine.fit; boosters: `verbose`, `distributed.dask`; sklearn: nothing)."""

    # {"columns": [matrix index], "names": [...], "cardinalities": [...], "native": bool (encoding native)}
    categorical: dict[str, Any] | None = None
    checkpoint_dir: Path | None = None  # persistent across crashes of the stage (unlike its temp folder)
    checkpoint: CheckpointConfig | None = None  # training.checkpoint
    config_hash: str = ""  # checkpoints written under another hash are refused...
    resume_anyway: bool = False  # ...unless this is set (--resume-anyway)
    verbose: bool = False  # progress on stderr (torch: bar and epoch lines; boosters: a round bar on a terminal)
    # torch families: each epoch's values as it ends (step = epoch): MLflow shows the curves while training runs.
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    # torch families: `training.callbacks`, import paths of callback classes (trainpipe/engine/callbacks.py)
    callbacks: Sequence[str] = ()
    # `training.distributed`: xgboost/lightgbm train on Dask when its `dask` is set (models/gbdt_dask.py)
    distributed: DistributedConfig | None = None
    # torch families: `training.distributed.backend`, the process group's backend when torchrun runs the fit
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    # The run's `budget` (BudgetChecker.poll): torch checks it after every step (checkpoint, then stop), the
    # boosters after every round; None outside a run or without a budget.
    budget: Callable[[], BudgetStop | None] | None = None
    # every iterating family (torch epochs, boosting rounds): makes the watcher of this fit (the health checks)
    # from what the family knows (monitored value and direction, loss key, epochs or rounds); None: no watcher
    watch: WatchFactory | None = None


@dataclass
class FitResult:
    history: dict[str, list[float]] = field(default_factory=dict)  # metric name -> value per iteration
    best_iteration: int | None = None
    iterations: int = 0
    stopped_early: bool = False


@runtime_checkable
class ModelFamily(Protocol):
    name: ClassVar[str]  # its `model.type`, written into family.json (load_family finds the family by it)
    needs: ClassVar[PreprocessingNeeds]
    # The parameter that sets the iteration count (boosting rounds, epochs): a model retrained on train + validation
    # after tuning gets the best trial's count there. None: one fit, no iterations to set.
    iteration_param: ClassVar[str | None]
    # pip distributions a packaged model of this family needs beyond trainpipe's own (pinned to this environment's
    # versions); an entry that is a tuple lists alternatives, the first installed one is pinned (xgboost-cpu).
    requirements: ClassVar[tuple[str | tuple[str, ...], ...]]
    scaffold: ClassVar[ScaffoldDefaults | None]  # `trainpipe init --model NAME`; None: init does not offer it
    # Optional, like `fit_stream`: `fit_releases_gil = True` says its fit runs in native code that releases the GIL
    # (the boosters), so the run's MLflow worker may wait for training to start, where MLflow's import only shares
    # the cores. Without it (a Python training loop: torch) the worker starts with the run (pipeline/driver.py).

    def __init__(self, task: str, params: dict[str, Any], n_classes: int, seed: int, threads: int,
                 estimator: str | None = None) -> None: ...

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
            early_stopping_rounds: int | None = None, report: ReportFn | None = None,
            train_metrics: bool = False, context: FitContext | None = None) -> FitResult:
        """train_metrics: also evaluate the training split every iteration (costly on large data); context: what
        the train stage knows beyond the matrices (None means FitContext(): no checkpoints, no progress)."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Regression values, or class codes for classification."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n_rows, n_classes) probabilities; classification only."""

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> ModelFamily: ...

    @classmethod
    def default_search_space(cls, task: str, estimator: str | None = None) -> dict[str, dict]:
        """Optuna-style space: {param: {type: float|int|categorical, low, high, log, choices}}; with an estimator
        (sklearn), only the names it accepts."""

    @classmethod
    def check_config(cls, params: dict[str, Any], estimator: str | None, task: str) -> None:
        """Raise ModelError naming `model.params.X` for anything that cannot work, before any data is read."""

    @classmethod
    def user_code_hashes(cls, estimator: str | None) -> dict[str, str]:
        """{import path: source hash} of user code the family imports (an estimator outside site-packages), so
        that editing it invalidates cached training results; {} for none."""


def trains_under_torchrun(family: type) -> bool:
    """Whether a family's `fit` can run in every rank of a torchrun job (DDP through trainpipe.engine.fit): the
    optional class attribute `torchrun = True`, which the torch families set. It is not part of the protocol, so
    a family that does not declare it (boosters, sklearn, plugins) simply trains in one process."""
    return getattr(family, "torchrun", False) is True


def frame_predictor(model: Any, preprocessor: Any) -> Any | None:
    """A fitted family's predictor on raw DataFrames with the fitted preprocessor folded in, when the family offers
    one (the optional method `fold_preprocessor(preprocessor)`, torch_mlp's) and it folds this preprocessor; else
    None. Its `scores(frame)` returns what predict_proba (classification) or predict (regression) gives on the
    transformed frame, or None for a frame it declines. Not part of the protocol: packages of families without it
    transform first, as always."""
    fold = getattr(model, "fold_preprocessor", None)
    return fold(preprocessor) if callable(fold) else None


def probabilities_from_binary(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    return np.column_stack([1.0 - p, p])


def predict_from_proba(proba: np.ndarray) -> np.ndarray:
    return np.argmax(proba, axis=1)
