"""Lazy Adam(W) for sparse-gradient id embeddings: the touched rows get exactly AdamW's update, untouched rows
do not move, dense parameters are AdamW's own, and the loop's gradient norm and clipping accept sparse grads."""

from __future__ import annotations

import pytest
import torch

from trainpipe.engine.config import EngineParams
from trainpipe.engine.loop import grad_norm
from trainpipe.engine.schedules import build_optimizer
from trainpipe.engine.sparse_adam import LazySparseAdamW, scatter_rows


def pair(sparse: bool, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Embedding(6, 3, sparse=sparse), torch.nn.Linear(3, 1))


def train(module: torch.nn.Module, opt: torch.optim.Optimizer, batches: list[list[int]]) -> None:
    for ids in batches:
        opt.zero_grad(set_to_none=True)
        module(torch.tensor(ids)).pow(2).sum().backward()
        opt.step()


@pytest.mark.parametrize("decoupled", [True, False])
def test_rows_touched_every_step_match_dense_adam_exactly(decoupled):
    batches = [[0, 1, 2, 3, 4, 5, 5]] * 4  # every row in every batch: lazy and dense Adam agree
    dense, sparse = pair(False), pair(True)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    train(dense, cls(dense.parameters(), lr=0.05, weight_decay=0.1), batches)
    train(sparse, LazySparseAdamW(sparse.parameters(), lr=0.05, weight_decay=0.1, decoupled=decoupled), batches)
    for a, b in zip(dense.parameters(), sparse.parameters()):
        assert torch.allclose(a, b, atol=1e-6), (a, b)


def test_rows_no_batch_touched_keep_their_value_and_the_state_round_trips():
    module = pair(True)
    before = module[0].weight.detach().clone()
    opt = LazySparseAdamW(module.parameters(), lr=0.1, weight_decay=0.5)
    train(module, opt, [[0, 1], [1, 2]])
    after = module[0].weight.detach()
    assert torch.equal(after[3:], before[3:]) and not torch.equal(after[:3], before[:3])
    again = LazySparseAdamW(pair(True).parameters(), lr=0.1, weight_decay=0.5)
    again.load_state_dict(opt.state_dict())
    assert float(again.state_dict()["state"][0]["step"]) == 2.0  # the embedding's steps: checkpoints resume them


def test_the_engine_picks_the_lazy_optimizer_only_for_sparse_embeddings_and_adam():
    assert isinstance(build_optimizer(pair(True), EngineParams(), torch.device("cpu")), LazySparseAdamW)
    assert type(build_optimizer(pair(False), EngineParams(), torch.device("cpu"))) is torch.optim.AdamW
    assert type(build_optimizer(pair(False), EngineParams(optimizer="sgd"), torch.device("cpu"))) is torch.optim.SGD


def test_gradient_norm_and_clipping_count_sparse_gradients_by_their_values():
    sparse, dense = pair(True), pair(False)
    for module in (sparse, dense):
        module(torch.tensor([1, 2, 2])).sum().backward()
    norm = grad_norm([q.grad for q in sparse.parameters()], None)
    assert torch.allclose(norm, torch.nn.utils.get_total_norm([q.grad for q in dense.parameters()]))
    grad_norm([q.grad for q in sparse.parameters()], 0.1)
    assert torch.allclose(grad_norm([q.grad for q in sparse.parameters()], None), torch.tensor(0.1), atol=1e-5)


def test_a_table_with_an_empty_sparse_gradient_leaves_the_others_update_intact():
    """Several sparse tables go through one fused update; one with no touched row must not shift the others."""
    torch.manual_seed(0)
    empty_table, used, reference = (torch.nn.Embedding(4, 3, sparse=True) for _ in range(3))
    reference.load_state_dict(used.state_dict())
    opt = LazySparseAdamW([*empty_table.parameters(), *used.parameters()], lr=0.1, weight_decay=0.1)
    alone = LazySparseAdamW(reference.parameters(), lr=0.1, weight_decay=0.1)
    ids = torch.tensor([1, 3])
    used(ids).sum().backward()
    reference(ids).sum().backward()
    empty_table.weight.grad = torch.sparse_coo_tensor(torch.zeros((1, 0), dtype=torch.int64), torch.zeros(0, 3), (4, 3),
                                                        check_invariants=True)
    before = empty_table.weight.detach().clone()
    opt.step()
    alone.step()
    assert torch.equal(used.weight, reference.weight) and torch.equal(empty_table.weight, before)


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "bfloat16"])
def test_row_scatter_writes_exactly_what_index_copy_writes_and_tells_autograd(layout):
    torch.manual_seed(0)
    table = torch.randn(8, 5) if layout != "transposed" else torch.randn(5, 8).T  # index_copy_'s path
    rows, values = torch.tensor([6, 1, 3]), torch.randn(3, 5)
    if layout == "bfloat16":  # NumPy has no bf16: index_copy_'s path
        table, values = table.bfloat16(), values.bfloat16()
    table.requires_grad_(True)
    expected = table.detach().clone().index_copy_(0, rows, values)
    version = table._version
    with torch.no_grad():
        scatter_rows(table, rows, values)
    assert torch.equal(table.detach(), expected)
    assert table._version > version  # a graph that saved the table before the write refuses to use it
