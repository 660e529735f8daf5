"""Training-throughput comparisons of benchmarks/bench_ranking.py: the plain PyTorch two-tower loop (the training
target's baseline), the in-batch softmax step against a per-example loop, and dense against sparse id-embedding
gradients at a large id count. Kept apart so that the benchmark script stays one readable page."""

from __future__ import annotations

import time

import numpy as np
import torch

from trainpipe.engine.schedules import build_optimizer
from trainpipe.evaluation.ranking_metrics import DotScorer, evaluate
from trainpipe.models.ranking_losses import sampled_softmax
from trainpipe.models.two_tower import TwoTowerFamily

SEED, KS = 0, [10, 50]  # bench_ranking.py imports these


def plain_torch_fit(data, parts: dict, m: dict, params: dict, val_users: np.ndarray) -> tuple[float, list[float]]:
    """The same two-tower model and training as a hand-written PyTorch loop (the baseline of issue 16's "2x
    faster": trainpipe's training before it was this formulation): dense `nn.Embedding` id tables drawn from
    N(0, 0.1) as trainpipe's (no unknown-id row, unseen ids not zeroed), `nn.Linear` to the vector width, L2 normalisation, in-batch softmax of scaled cosines with the
    log-q correction and the other rows' copies of a row's item masked (`F.cross_entropy`, weighted mean),
    `torch.optim.AdamW(fused=True)` with trainpipe's lr and weight decay, a seeded shuffle per epoch, and the same
    exact validation Recall@K (trainpipe's `evaluate`) after every epoch. Returns (seconds, validation recall@10)."""
    from torch import nn
    from torch.nn import functional as F

    p = TwoTowerFamily("ranking", params).params
    train = parts["train"]
    users = torch.from_numpy(data.user[train].astype(np.int64))
    items = torch.from_numpy(data.item[train].astype(np.int64))
    weights = torch.from_numpy(data.weight[train].astype(np.float32))
    started = time.perf_counter()
    torch.manual_seed(SEED)

    def tower(n: int) -> tuple[nn.Embedding, nn.Linear]:
        ids = nn.Embedding(n, p.id_dim)
        nn.init.normal_(ids.weight, std=0.1)
        return ids, nn.Linear(p.id_dim, p.embedding_dim)

    (user_ids, user_proj), (item_ids, item_proj) = tower(data.n_users), tower(data.n_items)
    modules = nn.ModuleList([user_ids, user_proj, item_ids, item_proj])
    counts = np.bincount(data.item[train], minlength=data.n_items) + 1.0
    log_q = torch.from_numpy(np.log(np.minimum(counts / counts.sum() * p.batch_size, 1.0)).astype(np.float32))
    opt = torch.optim.AdamW(modules.parameters(), lr=p.lr, weight_decay=p.weight_decay, fused=True)
    scale = 1.0 / p.temperature
    recall = []
    for epoch in range(p.epochs):
        order = torch.randperm(len(users), generator=torch.Generator().manual_seed(SEED + epoch))
        for start in range(0, len(order), p.batch_size):
            rows = order[start:start + p.batch_size]
            u_codes, i_codes, w = users[rows], items[rows], weights[rows]
            u = F.normalize(user_proj(user_ids(u_codes)), dim=-1)
            v = F.normalize(item_proj(item_ids(i_codes)), dim=-1)
            logits = u @ v.T * scale - log_q[i_codes][None, :]
            same = i_codes[None, :] == i_codes[:, None]
            same.fill_diagonal_(False)
            logits = logits.masked_fill(same, float("-inf"))
            target = torch.arange(len(rows))
            loss = (F.cross_entropy(logits, target, reduction="none") * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            U = F.normalize(user_proj(user_ids.weight), dim=-1)
            V = F.normalize(item_proj(item_ids.weight), dim=-1)
        summary, _ = evaluate(DotScorer(U, V), m["validation"], m["train"], list(KS), np.ones(data.n_items), 1024,
                              users=val_users)
        recall.append(round(summary["recall_at_10"], 4))
    return time.perf_counter() - started, recall


def step_throughput(model: TwoTowerFamily, user: np.ndarray, item: np.ndarray, batch: int, steps: int) -> dict:
    """interactions/s of one optimizer step: in-batch softmax vs a per-example loop with `batch - 1` sampled
    negatives each (the same negatives count), same towers, same optimizer."""
    module = model.module.train()
    opt = build_optimizer(module, model.params, torch.device("cpu"))  # the lazy Adam of its sparse id embeddings
    gen = torch.Generator().manual_seed(SEED)
    n_items = model.layout["n_items"]
    scale = module.scale()
    out = {}
    for name in ("in_batch_softmax", "naive_per_example"):
        n_steps = steps if name == "in_batch_softmax" else max(1, steps // 8)
        started = time.perf_counter()
        for s in range(n_steps):
            idx = torch.from_numpy(np.arange(s * batch, (s + 1) * batch) % len(user))
            users, items = torch.from_numpy(user)[idx], torch.from_numpy(item)[idx]
            if name == "in_batch_softmax":
                o = module(users, items)
                loss = sampled_softmax(o["u"], o["v"], items, scale, log_q=module.log_q[items])
            else:
                losses = []
                for u, i in zip(users, items):  # the loop the in-batch trick replaces
                    negatives = torch.randint(n_items, (batch - 1,), generator=gen)
                    candidates = torch.cat([i.view(1), negatives])
                    logits = (module.user_vectors(u.view(1)) @ module.item_vectors(candidates).T) * scale
                    losses.append(torch.nn.functional.cross_entropy(logits, torch.zeros(1, dtype=torch.int64)))
                loss = torch.stack(losses).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        out[name] = n_steps * batch / (time.perf_counter() - started)
    out["ratio"] = out["in_batch_softmax"] / out["naive_per_example"]
    return out


def large_id_steps(n_users: int, n_items: int, steps: int, batch: int, repeats: int) -> dict:
    """interactions/s of two_tower's training step (towers, in-batch softmax, backward, gradient norm, optimizer
    step: what the loop does per batch) on `n_users` × `n_items` id tables, dense id-embedding gradients with
    AdamW against sparse ones with the lazy Adam, alternating. At this size the dense optimizer reads and writes
    every row of both tables and both moment tables at every step; the sparse one only the batch's rows."""
    from trainpipe.engine.loop import grad_norm
    from trainpipe.models.two_tower import build_module

    layout = {"n_users": n_users, "n_items": n_items, "user_numeric": 0, "item_numeric": 0, "user_cards": [],
              "item_cards": []}
    rng = np.random.default_rng(SEED)
    batches = [(torch.from_numpy(rng.integers(0, n_users, batch)), torch.from_numpy(rng.integers(0, n_items, batch)))
               for _ in range(steps + 2)]
    rates: dict[str, list[float]] = {"dense": [], "sparse": []}
    for _ in range(repeats):
        for name in ("dense", "sparse"):
            params = TwoTowerFamily("ranking", {"batch_size": batch, "sparse_embeddings": name == "sparse"}).params
            torch.manual_seed(SEED)
            module = build_module(layout, params).train()
            opt = build_optimizer(module, params, torch.device("cpu"))
            for i, (users, items) in enumerate(batches):
                if i == 2:  # the first two steps allocate the optimizer state: not timed
                    started = time.perf_counter()
                o = module(users, items)
                loss = sampled_softmax(o["u"], o["v"], items, module.scale(), log_q=module.log_q[items])
                loss.backward()
                for q in module.parameters():  # as the loop does: sparse gradients coalesced once
                    if q.grad is not None and q.grad.is_sparse:
                        q.grad = q.grad.coalesce()
                grad_norm([q.grad for q in module.parameters() if q.grad is not None], None)
                opt.step()
                opt.zero_grad(set_to_none=True)
                float(loss.item())
            rates[name].append(steps * batch / (time.perf_counter() - started))
            del module, opt
    medians = {name: float(np.median(v)) for name, v in rates.items()}
    return {"users": n_users, "items": n_items, "id_dim": params.id_dim, "batch_size": batch, "steps": steps,
            "interactions_per_s": medians, "runs": rates, "speedup_sparse_vs_dense": medians["sparse"] / medians["dense"]}


def in_batch_floor(batch: int, dim: int, steps: int) -> float:
    """Seconds per step of the work every in-batch softmax step must do whatever the loop around it: the
    batch × batch scores of two batch × dim matrices, their cross-entropy, and the backward of both (three
    batch × batch × dim matmuls). Towers, gathers, masking, log-q and the optimizer are left out, so this is a
    lower bound on any loop's step, and plain-loop time / (steps × this) bounds the speedup any loop can reach
    over it on this CPU."""
    gen = torch.Generator().manual_seed(SEED)
    u = torch.randn(batch, dim, generator=gen).requires_grad_()
    v = torch.randn(batch, dim, generator=gen).requires_grad_()
    target = torch.arange(batch)
    for i in range(steps + 5):
        if i == 5:  # warm-up steps allocate: not timed
            started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(u @ v.T * 10.0, target)
        loss.backward()
        u.grad = v.grad = None
    return (time.perf_counter() - started) / steps
