"""`two_tower`: user and item towers (id embedding + MLP over features), L2-normalised, dot product.

Trained by the one torch loop (trainpipe.engine.loop): batches are (user codes, item codes, weights),
the towers gather their features from buffers inside the module, and the loss is one of
trainpipe.models.ranking_losses. Early stopping follows validation Recall@K, computed exactly over the whole
catalogue by the loop's `evaluator` hook. Code 0 of each id table means "unknown id": it stays a zero
vector, so a new user with features is scored by the feature part of the tower alone.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
from pydantic import Field, PositiveInt

from trainpipe.engine.config import EngineParams, check_torch, import_torch, parse_params
from trainpipe.errors import ModelError
from trainpipe.models.base import FitContext, FitResult, PreprocessingNeeds, ReportFn

if TYPE_CHECKING:
    import torch


class TwoTowerParams(EngineParams):
    """`model.params` of two_tower: towers, loss and negatives, plus the loop's hyperparameters.

    Defaults measured on real ratings (MovieLens 100K, leave-last-one-out; benchmarks/bench_ranking_quality.py,
    docs/ranking.md "Defaults on real data"): 128-wide id embeddings and vectors with weight decay 0.01 on every
    weight, trained for up to 40 epochs with early stopping, keep up with PureSVD where 64 wide without weight
    decay, stopped after 3 bad epochs, fell behind it."""

    epochs: int = Field(40, ge=1, description="Passes over the training interactions (at most: with "
                        "training.early_stopping_rounds, training stops once validation recall stalls).")
    batch_size: int = Field(256, ge=2, description="Interactions per batch; the other rows' items are the negatives.")
    lr: float = Field(1e-2, gt=0, description="Peak learning rate.")
    # None until fit knows ranking.k (fit passes the loop a copy with it filled in)
    monitor: str | None = Field(None, description="Early-stopping metric; "  # type: ignore[assignment]
                                "default validation_recall_at_<first ranking.k>.")
    mode: Literal["min", "max"] = Field("max", description="Recall: higher is better.")
    embedding_dim: int = Field(128, ge=2, description="Width of the normalised user and item vectors.")
    id_dim: int = Field(128, ge=1, description="Width of the user/item id embeddings.")
    weight_decay: float = Field(0.01, ge=0, description="Decoupled weight decay (AdamW) of every weight, id "
                                "embeddings included: regularises ids with few interactions (measured better on "
                                "sparse real ratings; 0.1 was far worse).")
    sparse_embeddings: bool = Field(True, description="Sparse gradients for the user/item id embeddings, updated "
                                    "lazily (only the batch's rows) by Adam/AdamW: a step's cost follows the batch, "
                                    "not the number of ids (engine/sparse_adam.py). Ignored with optimizer sgd.")
    categorical_dim: int = Field(16, ge=1, description="Width of each categorical feature's embedding.")
    hidden_dims: list[PositiveInt] = Field(default_factory=list, description="Hidden layers of each tower's MLP (empty: one "
                                   "linear layer over [id embedding, features]).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout after each hidden layer.")
    loss: Literal["softmax", "bpr", "triplet"] = Field("softmax", description="softmax: in-batch sampled softmax; bpr; "
                                                        "triplet (margin on cosine similarity).")
    logq_correction: bool = Field(True, description="softmax: subtract log(sampling probability) of each negative.")
    random_negatives: int = Field(0, ge=0, description="Extra uniformly sampled negative items per batch (mixed negatives).")
    temperature: float = Field(0.1, gt=0, description="Logits are cosine / temperature (initial value if learned).")
    learn_temperature: bool = Field(False, description="Learn the temperature along with the towers.")
    margin: float = Field(0.2, gt=0, description="triplet: margin on the cosine similarity.")


_torch = functools.partial(import_torch, "two_tower")


@dataclass
class RankingData:
    """What fit needs: training interactions, side features, and validation for early stopping."""

    user: np.ndarray
    item: np.ndarray
    weight: np.ndarray
    n_users: int
    n_items: int
    user_num: np.ndarray | None = None
    user_cat: np.ndarray | None = None
    user_cards: list[int] | None = None
    item_num: np.ndarray | None = None
    item_cat: np.ndarray | None = None
    item_cards: list[int] | None = None
    validation_relevant: Any = None  # users × items CSR of validation positives
    exclude: Any = None  # users × items CSR of training interactions (not ranked)
    ks: tuple[int, ...] = (10,)
    validation_users: np.ndarray | None = None
    batch_users: int = 1024


def build_module(layout: dict[str, Any], p: TwoTowerParams) -> torch.nn.Module:
    _torch()  # one line naming the extra when torch is missing
    import torch
    from torch import nn
    from torch.nn import functional as F

    from trainpipe.engine.matmul import Linear

    class Tower(nn.Module):
        def __init__(self, n_ids: int, n_num: int, cards: list[int]) -> None:
            super().__init__()
            self.ids = nn.Embedding(n_ids + 1, p.id_dim, sparse=p.sparse_embeddings and p.optimizer != "sgd")  # row 0: unknown id
            nn.init.normal_(self.ids.weight, std=0.1)
            with torch.no_grad():
                self.ids.weight[0].zero_()
            self.cats = nn.ModuleList(nn.Embedding(c + 1, p.categorical_dim) for c in cards)
            layers: list[nn.Module] = []
            width = p.id_dim + n_num + p.categorical_dim * len(cards)
            for hidden in p.hidden_dims:
                layers += [Linear(width, hidden), nn.ReLU()] + ([nn.Dropout(p.dropout)] if p.dropout else [])
                width = hidden
            layers.append(Linear(width, p.embedding_dim))  # nn.Linear, its CPU float32 products on oneDNN
            self.net = nn.Sequential(*layers)

        def forward(self, ids: torch.Tensor, num: torch.Tensor | None, cat: torch.Tensor) -> torch.Tensor:
            parts = [self.ids(ids)]
            if num is not None and num.shape[1]:
                parts.append(num)
            parts += [emb(cat[:, i]) for i, emb in enumerate(self.cats)]
            x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # ids alone: no copy (and none in backward)
            return F.normalize(self.net(x).float(), dim=-1)

    class TwoTower(nn.Module):
        user_num: torch.Tensor  # buffers, registered below
        user_cat: torch.Tensor
        item_num: torch.Tensor
        item_cat: torch.Tensor
        log_q: torch.Tensor
        log_scale: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            lay = layout
            self.n_items = lay["n_items"]
            self.user_tower = Tower(lay["n_users"], lay["user_numeric"], lay["user_cards"])
            self.item_tower = Tower(lay["n_items"], lay["item_numeric"], lay["item_cards"])
            # Side features of every known id, gathered per batch (row = code + 1; row 0 = unknown).
            self.register_buffer("user_num", torch.zeros(lay["n_users"] + 1, lay["user_numeric"]))
            self.register_buffer("user_cat", torch.zeros(lay["n_users"] + 1, len(lay["user_cards"]), dtype=torch.int64))
            self.register_buffer("item_num", torch.zeros(lay["n_items"] + 1, lay["item_numeric"]))
            self.register_buffer("item_cat", torch.zeros(lay["n_items"] + 1, len(lay["item_cards"]), dtype=torch.int64))
            self.register_buffer("log_q", torch.zeros(lay["n_items"]))  # log in-batch sampling probability per item
            log_scale = torch.tensor(math.log(1.0 / p.temperature))
            if p.learn_temperature:
                self.log_scale = nn.Parameter(log_scale)
            else:
                self.register_buffer("log_scale", log_scale)

        def scale(self) -> torch.Tensor:
            return self.log_scale.exp().clamp(max=100.0)

        def user_vectors(self, users: torch.Tensor, num: torch.Tensor | None = None,
                         cat: torch.Tensor | None = None) -> torch.Tensor:
            rows = users + 1
            return self.user_tower(rows, self.user_num[rows] if num is None else num,
                                   self.user_cat[rows] if cat is None else cat)

        def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
            rows = items + 1
            return self.item_tower(rows, self.item_num[rows], self.item_cat[rows])

        def forward(self, users: torch.Tensor, items: torch.Tensor) -> dict[str, torch.Tensor]:
            out = {"u": self.user_vectors(users), "v": self.item_vectors(items), "items": items}
            if p.random_negatives and self.training:
                negatives = torch.randint(self.n_items, (p.random_negatives,), device=items.device)
                out.update(v_neg=self.item_vectors(negatives), neg_items=negatives)
            return out

    return TwoTower()


class TwoTowerFamily:
    name = "two_tower"
    tasks = ("ranking",)
    needs = PreprocessingNeeds(tree_model=False, handles_missing=False)
    fit_releases_gil = False
    iteration_param = "epochs"
    torchrun = True  # fit runs in every rank of a torchrun job (DDP in trainpipe.engine.fit)
    requirements = ("torch",)
    scaffold = None  # `trainpipe init --task ranking` writes its own pipeline (tools/scaffold.py)
    PARAMS = TwoTowerParams

    def __init__(self, task: str, params: dict[str, Any], n_classes: int = 0, seed: int = 0, threads: int = 1,
                 estimator: str | None = None) -> None:
        self.task, self.seed, self.threads = task, seed, threads
        self.params = parse_params(TwoTowerParams, params, self.name)
        # The TwoTower module of build_module (fit or load); Any: its class exists only once torch is imported.
        self.module: Any = None
        self.layout: dict[str, Any] = {}
        self.best_iteration: int | None = None

    @classmethod
    def check_config(cls, params: dict[str, Any], estimator: str | None, task: str) -> None:
        if task != "ranking":
            raise ModelError(f"model.type: two_tower is a ranking model; set task: ranking (got task {task!r})",
                             key="model.type")
        check_torch(cls.name)
        parse_params(TwoTowerParams, params, cls.name)

    # -- training ------------------------------------------------------------------------------
    def _loss_fn(self) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
        from trainpipe.models.ranking_losses import LOSSES

        p = self.params
        loss = cast("Callable[..., torch.Tensor]", LOSSES[p.loss])  # the losses' signatures differ in extras
        uniform = -math.log(self.layout["n_items"])

        def fn(out: dict[str, torch.Tensor], weight: torch.Tensor) -> torch.Tensor:
            module = self.module
            extra: dict[str, Any] = {}
            if p.loss == "softmax" and p.logq_correction:
                extra["log_q"] = module.log_q[out["items"]]
                if "v_neg" in out:
                    extra["neg_log_q"] = torch_full(out["neg_items"], uniform + math.log(p.random_negatives))
            if p.loss == "triplet":
                extra["margin"] = p.margin
            return loss(out["u"], out["v"], out["items"], module.scale(), weight=weight, v_neg=out.get("v_neg"),
                        neg_items=out.get("neg_items"), **extra)

        return fn

    def _evaluator(self, data: RankingData) -> Callable[[], dict[str, float]]:
        """Validation metrics over the whole catalogue for the loop's epoch end (no RNG is touched)."""
        torch = _torch()
        from trainpipe.evaluation.ranking_metrics import DotScorer, evaluate

        def run() -> dict[str, float]:
            self.module.eval()
            with torch.no_grad():
                U, V = self._all_vectors()
            self.module.train()
            summary, _ = evaluate(DotScorer(U, V), data.validation_relevant, data.exclude,
                                  list(data.ks), np.ones(data.n_items), data.batch_users, users=data.validation_users)
            return {k: v for k, v in summary.items() if not k.startswith(("coverage", "popularity", "users"))}

        return run

    def fit(self, data: RankingData, *, early_stopping_rounds: int | None = None, report: ReportFn | None = None,
            context: FitContext | None = None, **_: Any) -> FitResult:
        """Early stopping and `report` follow validation Recall@K at the first of `data.ks` by default."""
        _torch()
        import torch

        from trainpipe.engine.batches import TensorBatches, as_tensor
        from trainpipe.engine.fit import fit_torch

        context = context or FitContext()
        self.layout = {"n_users": data.n_users, "n_items": data.n_items,
                       "user_numeric": 0 if data.user_num is None else int(data.user_num.shape[1]),
                       "item_numeric": 0 if data.item_num is None else int(data.item_num.shape[1]),
                       "user_cards": list(data.user_cards or []), "item_cards": list(data.item_cards or [])}

        def build() -> torch.nn.Module:
            self.module = build_module(self.layout, self.params)
            self._load_side(data)
            return self.module

        monitor = self.params.monitor or f"validation_recall_at_{data.ks[0]}"
        params = self.params.model_copy(update={"monitor": monitor})
        train = TensorBatches(as_tensor(data.user, torch.int64), as_tensor(data.item, torch.int64),
                              as_tensor(data.weight, torch.float32))
        self.module, run = fit_torch(build, self._loss_fn(), None, params, train, None, seed=self.seed,
                                     threads=self.threads, options=context, patience=early_stopping_rounds,
                                     report=report, evaluator=self._evaluator(data))
        self.best_iteration = run.best_epoch
        return FitResult(history=run.history, best_iteration=run.best_epoch, iterations=run.epochs,
                         stopped_early=run.stopped_early)

    def _load_side(self, data: RankingData) -> None:
        """Copy side features and the log sampling probabilities into the module's buffers."""
        torch = _torch()
        m = self.module
        with torch.no_grad():
            for name, values in (("user_num", data.user_num), ("user_cat", data.user_cat),
                                 ("item_num", data.item_num), ("item_cat", data.item_cat)):
                if values is not None and values.shape[1]:
                    getattr(m, name)[1:] = torch.from_numpy(np.ascontiguousarray(values))
            # Ids with no training interaction get no gradient (unless drawn as random negatives): their id
            # rows start zero, so such users and items are scored by their features alone, like the unknown id.
            for table, codes, n in ((m.user_tower.ids, data.user, data.n_users),
                                    (m.item_tower.ids, data.item, data.n_items)):
                unseen = np.ones(n + 1, dtype=bool)
                unseen[codes + 1] = False
                table.weight[torch.from_numpy(unseen)] = 0.0
            counts = np.bincount(data.item, minlength=data.n_items).astype(np.float64) + 1.0
            # in-batch: the chance an item is among a batch's B positives ≈ B × its share of interactions
            q = np.minimum(counts / counts.sum() * self.params.batch_size, 1.0)
            m.log_q.copy_(torch.from_numpy(np.log(q).astype(np.float32)))

    # -- vectors (evaluation and serving) -------------------------------------------------------
    def _all_vectors(self, batch: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
        torch = _torch()
        device = next(self.module.parameters()).device
        users = torch.arange(self.layout["n_users"], device=device)
        items = torch.arange(self.layout["n_items"], device=device)
        U = torch.cat([self.module.user_vectors(users[s:s + batch]) for s in range(0, len(users), batch)])
        V = torch.cat([self.module.item_vectors(items[s:s + batch]) for s in range(0, len(items), batch)])
        return U.float().cpu(), V.float().cpu()

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(users × d, items × d) float32 normalised vectors of every known user and item."""
        torch = _torch()
        self.module.eval()
        with torch.no_grad():
            U, V = self._all_vectors()
        return U.numpy(), V.numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        raise ModelError("model.type: two_tower ranks items; use `trainpipe recommend`", key="model.type")

    predict_proba = predict

    def save(self, directory: Path) -> None:
        torch = _torch()
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.module.state_dict(), directory / "model.pt")
        meta = {"family": self.name, "task": self.task, "seed": self.seed, "threads": self.threads,
                "params": self.params.model_dump(), "layout": self.layout, "best_iteration": self.best_iteration}
        (directory / "family.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> TwoTowerFamily:
        torch = _torch()
        meta = json.loads((Path(directory) / "family.json").read_text())
        model = cls(meta["task"], meta["params"], 0, meta["seed"], meta["threads"])
        model.layout, model.best_iteration = meta["layout"], meta.get("best_iteration")
        model.module = build_module(model.layout, model.params)
        model.module.load_state_dict(torch.load(Path(directory) / "model.pt", weights_only=True))
        model.module.eval()
        return model

    @classmethod
    def user_code_hashes(cls, estimator: str | None) -> dict[str, str]:
        return {}

    @classmethod
    def default_search_space(cls, task: str, estimator: str | None = None) -> dict[str, dict]:
        return {
            "lr": {"type": "float", "low": 3e-4, "high": 3e-2, "log": True},
            "temperature": {"type": "float", "low": 0.02, "high": 0.5, "log": True},
            "embedding_dim": {"type": "categorical", "choices": [32, 64, 128]},
            "weight_decay": {"type": "float", "low": 1e-8, "high": 1e-3, "log": True},
        }


def torch_full(like: torch.Tensor, value: float) -> torch.Tensor:
    torch = _torch()
    return torch.full(like.shape, value, dtype=torch.float32, device=like.device)
