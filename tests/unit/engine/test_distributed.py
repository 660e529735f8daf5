"""The distributed object without a process group: the torchrun environment, row shares, loss weights, and what a
single process gets (its input back, so the one-process loop is unchanged)."""

from __future__ import annotations

import pytest

import torch as torch

from trainpipe.engine.distributed import Distributed, resolve_backend, window_shares


def test_no_torchrun_environment_is_one_process_whose_calls_return_their_input():
    one = Distributed.from_env({})
    batch = (torch.arange(10.0), torch.arange(10.0))
    assert not one.enabled and one.is_main and one.world_size == 1
    assert one.shard(batch, 1) == (batch, True)
    assert one.sum([1.5, 2.0]) == [1.5, 2.0] and one.broadcast({"a": 1}) == {"a": 1} and one.gather(3) == [3]
    assert one.threads(8) == 8 and one.loss_weight(64, 64) == 1.0 and one.go(True)


def test_torchrun_environment_gives_rank_world_and_a_share_of_the_machines_threads():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    dist = Distributed.from_env(env)
    assert (dist.rank, dist.world_size, dist.local_rank, dist.local_world_size) == (3, 4, 1, 2)
    assert dist.enabled and not dist.is_main and dist.threads(8) == 4 and dist.threads(1) == 1


@pytest.mark.parametrize("rows, world, sizes", [(64, 2, [32, 32]), (52, 2, [26, 26]), (7, 3, [3, 2, 2])])
def test_each_rank_takes_a_contiguous_part_in_order_and_the_first_ranks_one_row_more(rows, world, sizes):
    window = (torch.arange(rows),)
    parts = [Distributed(rank, world).shard(window, 1) for rank in range(world)]
    assert all(counted for _, counted in parts)
    assert [len(part[0]) for part, _ in parts] == sizes == [end - start for start, end in window_shares(rows, world)]
    assert torch.equal(torch.cat([part[0] for part, _ in parts]), window[0])  # the global window, in its order


def test_a_rank_with_no_rows_of_the_window_trains_on_stand_in_rows_of_weight_zero():
    window = (torch.arange(2.0),)
    part, counted = Distributed(3, 4).shard(window, 1)  # 2 rows over 4 ranks: ranks 2 and 3 get none
    assert not counted and torch.equal(part[0], torch.tensor([0.0]))


def test_loss_weights_make_the_ranks_mean_gradient_the_global_windows_mean():
    # DDP averages over ranks: rank weights rows*world/window sum, over the ranks' parts, to world → mean 1
    world, window = 3, 7
    weights = [Distributed(r, world).loss_weight(end - start, window) for r, (start, end) in
               enumerate(window_shares(window, world))]
    assert sum(weights) / world == pytest.approx(1.0)


def test_auto_backend_is_nccl_on_cuda_and_gloo_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "gloo"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "nccl"
    assert resolve_backend("gloo", torch.device("cuda", 0)) == "gloo"
