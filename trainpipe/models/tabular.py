"""`torch_mlp`: an MLP over scaled numeric features plus learned embeddings of categorical codes.

The module imports no torch at import time (the CLI lists families without loading it); the
network, loss and metrics are built inside `fit`/`load` and trained by `trainpipe.engine.loop`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, PositiveInt

from trainpipe.engine.config import EngineParams, check_torch, import_torch, parse_params
from trainpipe.errors import ModelError
from trainpipe.models.base import (
    FitContext,
    FitResult,
    PreprocessingNeeds,
    ReportFn,
    ScaffoldDefaults,
    predict_from_proba,
    probabilities_from_binary,
)

if TYPE_CHECKING:
    import torch

    from trainpipe.models.tabular_fold import FoldedMLP


class TorchMLPParams(EngineParams):
    """`model.params` of torch_mlp: the architecture plus the loop's hyperparameters."""

    hidden_dims: list[PositiveInt] = Field(default_factory=lambda: [256, 128, 64],
                                           description="Width of each hidden layer (empty: a linear model).")
    activation: Literal["relu", "gelu", "silu", "tanh"] = Field("relu", description="Hidden-layer activation.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer (the largest per-row CPU cost).")
    fast_dropout: bool = Field(True, description="CPU dropout masks from 16-bit draws of a fast generator, made in "
                               "the compute dtype: same rate and scaling, another random stream, 1.5-1.7x faster training "
                               "at the same AUC (docs/operations.md); false: torch's own dropout. GPUs and torch.compile "
                               "always use torch's.")
    norm: Literal["none", "batch", "layer"] = Field("none", description="Normalisation after each hidden linear layer.")
    embedding_dims: dict[str, PositiveInt] = Field(default_factory=dict, description="Embedding width per categorical column "
                                           "(default min(max_embedding_dim, round(1.6 × cardinality^0.56))).")
    max_embedding_dim: int = Field(16, ge=1, description="Cap on the default embedding width.")


_torch = functools.partial(import_torch, "torch_mlp")


def build_module(n_numeric: int, cardinalities: list[int], emb_dims: list[int], p: TorchMLPParams,
                 out_dim: int) -> torch.nn.Module:
    _torch()  # one line naming the extra when torch is missing
    import torch
    from torch import nn

    acts: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
    from trainpipe.engine.layers import PackedDropout
    from trainpipe.engine.matmul import Linear  # nn.Linear whose float32 CPU products run on oneDNN (engine/matmul.py)

    class TabularMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # index 0 of every table is "unknown or missing" (code -1 shifted by one)
            self.embeddings = nn.ModuleList(nn.Embedding(c + 1, d) for c, d in zip(cardinalities, emb_dims))
            layers: list[nn.Module] = []
            width = n_numeric + sum(emb_dims)
            for hidden in p.hidden_dims:
                layers.append(Linear(width, hidden))
                if p.norm != "none":
                    layers.append(nn.BatchNorm1d(hidden) if p.norm == "batch" else nn.LayerNorm(hidden))
                layers.append(acts[p.activation]())
                if p.dropout:
                    layers.append(PackedDropout(p.dropout) if p.fast_dropout else nn.Dropout(p.dropout))
                width = hidden
            layers.append(Linear(width, out_dim, head=True))  # a small head: float32 under CPU autocast
            self.net = nn.Sequential(*layers)

        def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
            if not len(self.embeddings):
                return self.net(x_num)
            parts = [x_num] + [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
            return self.net(torch.cat(parts, dim=1))

    return TabularMLP()


PREDICT_LAYER_BYTES = 2 << 20


def predict_batch_rows(widths: list[int]) -> int:
    """Rows per forward pass at predict time: the widest layer's float32 input or output stays near 2 MB.

    Why this small: a batch's layer outputs then stay in the cores' caches between one layer and the next. For
    `[256, 128, 64]` on 1M rows here (2 cores, 2 MB L2 each, 32 MB L3), 2,048-row batches (2 MB) against 16,384
    (16 MB): 0.72 against 0.87 s on torch's two threads, 1.30 against 1.46 s on one (medians of 7, alternated);
    1 MB measured the same within noise. Far larger batches are worse still: glibc serves allocations above 32 MB
    with a fresh mmap, so every layer output is page-faulted in again (65,536 rows x 256 wide = 64 MB: ~700k page
    faults per million rows, 1.9 s of CPU against 1.2 s at 16,384 rows on one thread)."""
    widest = max([*widths, 1])
    return int(min(65536, max(1024, PREDICT_LAYER_BYTES // (4 * widest))))


class TorchMLPFamily:
    name = "torch_mlp"
    needs = PreprocessingNeeds(tree_model=False, handles_missing=False, categorical_codes=True)
    fit_releases_gil = False
    iteration_param = "epochs"
    torchrun = True  # fit runs in every rank of a torchrun job (DDP in trainpipe.engine.fit)
    requirements = ("torch",)
    scaffold = ScaffoldDefaults(params={"epochs": (30, "most epochs: early stopping usually ends sooner"),
                                        "hidden_dims": ([256, 128, 64], "width of each hidden layer")},
                                early_stopping_rounds=(5, "epochs without a better validation_loss"))
    PARAMS = TorchMLPParams

    def __init__(self, task: str, params: dict[str, Any], n_classes: int, seed: int, threads: int,
                 estimator: str | None = None) -> None:
        self.task, self.n_classes, self.seed, self.threads = task, n_classes, seed, threads
        self.params = parse_params(TorchMLPParams, params, self.name)
        self.module: torch.nn.Module | None = None
        self.layout: dict[str, Any] = {}  # numeric/categorical matrix columns, cardinalities, embedding widths, target scaling
        self.best_iteration: int | None = None

    @classmethod
    def check_config(cls, params: dict[str, Any], estimator: str | None, task: str) -> None:
        check_torch(cls.name)
        parse_params(TorchMLPParams, params, cls.name)

    # -- data layout ---------------------------------------------------------------------------
    def _plan(self, n_features: int, y: np.ndarray, categorical: dict[str, Any] | None) -> None:
        cat_cols = list((categorical or {}).get("columns", []))
        cards = [int(c) for c in (categorical or {}).get("cardinalities", [])]
        names = list((categorical or {}).get("names", [str(c) for c in cat_cols]))
        p = self.params
        dims = [int(p.embedding_dims.get(n, min(p.max_embedding_dim, max(1, round(1.6 * max(c, 1) ** 0.56)))))
                for n, c in zip(names, cards)]
        scale = (float(np.mean(y)), float(np.std(y)) or 1.0) if self.task == "regression" else (0.0, 1.0)
        self.layout = {"n_features": n_features, "numeric": [i for i in range(n_features) if i not in set(cat_cols)],
                       "categorical": cat_cols, "cardinalities": cards, "embedding_dims": dims, "y_scale": scale}

    def _inputs(self, X: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        from trainpipe.engine.batches import as_tensor

        torch = _torch()
        X = np.asarray(X)
        lay = self.layout
        x_num = as_tensor(X[:, lay["numeric"]], torch.float32)
        codes = np.rint(np.nan_to_num(X[:, lay["categorical"]], nan=-1.0)).astype(np.int64) + 1
        codes = np.clip(codes, 0, np.asarray(lay["cardinalities"], dtype=np.int64)) if lay["categorical"] else codes
        return x_num, as_tensor(codes.reshape(len(X), len(lay["categorical"])), torch.int64)

    def _target(self, y: np.ndarray) -> torch.Tensor:
        from trainpipe.engine.batches import as_tensor

        torch = _torch()
        if self.task == "multiclass":
            return as_tensor(y, torch.int64)
        mean, std = self.layout["y_scale"]
        return as_tensor((np.asarray(y, dtype=np.float64) - mean) / std, torch.float32)

    def _out_dim(self) -> int:
        return self.n_classes if self.task == "multiclass" else 1

    def _build(self) -> torch.nn.Module:
        lay = self.layout
        return build_module(len(lay["numeric"]), lay["cardinalities"], lay["embedding_dims"], self.params, self._out_dim())

    # -- training ------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray, *,
            early_stopping_rounds: int | None = None, report: ReportFn | None = None, train_metrics: bool = False,
            context: FitContext | None = None) -> FitResult:
        """train_metrics is not used: the loop's epoch history has train_loss already."""
        from trainpipe.engine.batches import TensorBatches
        from trainpipe.engine.fit import fit_torch

        context = context or FitContext()
        self._plan(X.shape[1], y, context.categorical)
        train = TensorBatches(*self._inputs(X), self._target(y))
        val = TensorBatches(*self._inputs(X_val), self._target(y_val))
        self.module, run = fit_torch(self._build, self._loss_fn(), self._metrics_fn(), self.params, train, val,
                                     seed=self.seed, threads=self.threads, options=context,
                                     patience=early_stopping_rounds, report=report)
        self.best_iteration = run.best_epoch
        return FitResult(history=run.history, best_iteration=run.best_epoch, iterations=run.epochs,
                         stopped_early=run.stopped_early)

    def fit_stream(self, train: Any, val: Any, *, early_stopping_rounds: int | None = None,
                   report: ReportFn | None = None, train_metrics: bool = False,
                   context: FitContext | None = None) -> FitResult:
        """Matrices larger than memory (data.streaming): batches from Parquet row groups, models/tabular_stream.py."""
        from trainpipe.models.tabular_stream import fit_mlp_stream

        return fit_mlp_stream(self, train, val, early_stopping_rounds=early_stopping_rounds, report=report,
                              context=context)

    def _loss_fn(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        torch = _torch()
        F = torch.nn.functional
        if self.task == "binary":
            return lambda out, y: F.binary_cross_entropy_with_logits(out.squeeze(1).float(), y)
        if self.task == "multiclass":
            return lambda out, y: F.cross_entropy(out.float(), y)
        return lambda out, y: F.mse_loss(out.squeeze(1).float(), y)

    def _metrics_fn(self) -> Callable[[torch.Tensor, torch.Tensor], dict[str, float]]:
        std = self.layout["y_scale"][1]
        if self.task == "binary":
            return lambda out, y: {"accuracy": float(((out.squeeze(1) > 0).float() == y).float().mean())}
        if self.task == "multiclass":
            return lambda out, y: {"accuracy": float((out.argmax(1) == y).float().mean())}
        return lambda out, y: {"rmse": float(((out.squeeze(1) - y) ** 2).mean().sqrt()) * std}

    # -- prediction ----------------------------------------------------------------------------
    def _fitted(self) -> torch.nn.Module:
        if self.module is None:
            raise ModelError("model: torch_mlp has no weights yet; fit or load it first", key="model")
        return self.module

    def _raw(self, X: np.ndarray) -> np.ndarray:
        torch = _torch()
        module = self._fitted()
        x_num, x_cat = self._inputs(X)
        rows = self._predict_rows()
        outs = []
        with torch.inference_mode():
            for start in range(0, len(x_num), rows):
                outs.append(module(x_num[start:start + rows], x_cat[start:start + rows]).float())
        return self._finish(torch.cat(outs) if outs else torch.zeros((0, self._out_dim())))

    def _predict_rows(self) -> int:
        lay = self.layout
        return predict_batch_rows([len(lay["numeric"]) + sum(lay["embedding_dims"]), *self.params.hidden_dims])

    def _finish(self, out: torch.Tensor) -> np.ndarray:
        """The network's outputs as probabilities (softmax, or the positive class's sigmoid) or regression values."""
        torch = _torch()
        if self.task == "multiclass":
            return torch.softmax(out, dim=1).double().numpy()
        if self.task == "binary":
            return torch.sigmoid(out.squeeze(1)).double().numpy()
        mean, std = self.layout["y_scale"]
        return out.squeeze(1).double().numpy() * std + mean

    def _probabilities(self, raw: np.ndarray) -> np.ndarray:
        return probabilities_from_binary(raw) if self.task == "binary" else raw

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self._probabilities(self._raw(X))

    def fold_preprocessor(self, preprocessor: Any) -> FoldedMLP | None:
        """A predictor on raw frames with the fitted preprocessor and the embeddings folded into the first layer
        (models/tabular_fold.py), or None when either is of a kind it does not fold."""
        from trainpipe.models.tabular_fold import fold

        if self.module is None:
            return None
        finish = self._finish if self.task == "regression" else lambda out: self._probabilities(self._finish(out))
        return fold(self.module, self.layout, preprocessor, self._predict_rows(), finish)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._raw(X) if self.task == "regression" else predict_from_proba(self.predict_proba(X))

    def save(self, directory: Path) -> None:
        torch = _torch()
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self._fitted().state_dict(), directory / "model.pt")
        meta = {"family": self.name, "task": self.task, "n_classes": self.n_classes, "seed": self.seed,
                "threads": self.threads, "params": self.params.model_dump(), "layout": self.layout,
                "best_iteration": self.best_iteration}
        (directory / "family.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> TorchMLPFamily:
        torch = _torch()
        meta = json.loads((directory / "family.json").read_text())
        model = cls(meta["task"], meta["params"], meta["n_classes"], meta["seed"], meta["threads"])
        model.layout, model.best_iteration = meta["layout"], meta.get("best_iteration")
        model.module = model._build()
        model.module.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
        model.module.eval()
        return model

    @classmethod
    def user_code_hashes(cls, estimator: str | None) -> dict[str, str]:
        return {}

    @classmethod
    def default_search_space(cls, task: str, estimator: str | None = None) -> dict[str, dict]:
        return {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "dropout": {"type": "float", "low": 0.05, "high": 0.5},
            "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
            "batch_size": {"type": "categorical", "choices": [256, 512, 1024]},
        }
