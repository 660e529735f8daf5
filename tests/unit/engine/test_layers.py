"""PackedDropout: the keep rate and scaling of dropout, masks independent across units, rows and calls,
reproducible from the torch seed, made in the compute dtype, off in eval."""

from __future__ import annotations

import copy
import pickle

import pytest

import torch as torch

from trainpipe.engine.layers import PackedDropout, dropout_mask


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drops_a_fraction_p_and_keeps_the_expected_value(p):
    layer = PackedDropout(p).train()
    torch.manual_seed(0)
    out = layer(torch.ones(1000, 1001))  # an odd size: the last random word is only partly used
    assert (out == 0).float().mean().item() == pytest.approx(p, abs=0.003)
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)
    assert out.unique().tolist() == [0.0, pytest.approx(1 / (1 - p))]


def _kept(shape, calls=1):
    return torch.stack([(dropout_mask(torch.Size(shape), 0.1, torch.float32) != 0).double() for _ in range(calls)])


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def test_every_16_bit_slot_of_a_random_word_keeps_the_same_fraction():
    """Four draws share a 64-bit word: a generator whose words do not span the full range (torch's
    `random_()` on int64 never sets the sign bit) would keep every fourth unit always."""
    torch.manual_seed(1)
    kept = _kept((400, 1000))  # 400,000 draws: a slot's keep rate has a standard error of 0.001
    for slot in range(4):
        assert kept[..., slot::4].mean().item() == pytest.approx(0.9, abs=0.005)


def test_masks_are_uncorrelated_across_neighbouring_units_rows_and_calls():
    torch.manual_seed(2)
    kept = _kept((512, 256), calls=4)  # 4 × 131,072 draws: a correlation's standard error is about 0.0014
    bound = 0.008  # > 5 standard errors
    for lag in (1, 2, 3, 4, 5):  # units sharing a 64-bit word (lags 1-3) and the next words' draws
        assert abs(_correlation(kept[..., :-lag], kept[..., lag:])) < bound, lag
    assert abs(_correlation(kept[:, :-1, :], kept[:, 1:, :])) < bound  # the same unit of neighbouring rows
    assert abs(_correlation(kept[:-1], kept[1:])) < bound  # consecutive calls (steps, layers)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_mask_is_made_in_the_compute_dtype_with_the_scale_folded_in(dtype):
    torch.manual_seed(3)
    mask = dropout_mask(torch.Size((64, 50)), 0.2, dtype)
    assert mask.dtype == dtype and mask.shape == (64, 50)
    assert mask.unique().tolist() == [0.0, torch.tensor(1 / 0.8, dtype=dtype).item()]


def test_under_bf16_autocast_the_output_stays_bf16():
    layer = torch.nn.Sequential(torch.nn.Linear(8, 16), PackedDropout(0.1)).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(4, 8)).dtype == torch.bfloat16


def test_same_seed_same_mask_and_gradients_flow_through_kept_values_only():
    layer = PackedDropout(0.3).train()
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(5)
    first = layer(x)
    torch.manual_seed(5)
    assert torch.equal(first, layer(x))
    torch.manual_seed(6)
    assert not torch.equal(first, layer(x))
    first.sum().backward()
    assert torch.equal(x.grad != 0, first != 0)
    assert torch.allclose(x.grad[first != 0], torch.tensor(1 / 0.7))


def test_eval_mode_is_the_identity():
    x = torch.randn(8, 4)
    assert torch.equal(PackedDropout(0.5).eval()(x), x)


def test_the_mask_stream_is_the_one_earlier_versions_drew():
    """Checkpoints of fast_dropout runs written before the seed buffer was reused resume with the same masks:
    the kept units of two calls after torch.manual_seed(7), as the per-call SFC64 of trainpipe 0.1 drew them."""
    layer = PackedDropout(0.3).train()
    torch.manual_seed(7)
    for count, index_sum in ((1441, 1512047), (1479, 1570612)):
        kept = layer(torch.ones(64, 33, dtype=torch.bfloat16)) != 0
        assert (int(kept.sum()), int(kept.flatten().nonzero().sum())) == (count, index_sum)


@pytest.mark.parametrize("copy_layer", [copy.deepcopy, lambda layer: pickle.loads(pickle.dumps(layer))])
def test_a_copied_layer_draws_the_originals_masks_from_torchs_generator(copy_layer):
    """The seed tensor and the numpy view of it that SFC64's state reads must stay one memory in the copy, or
    every call would restart from the same stale state (the same mask at every step)."""
    original = PackedDropout(0.5).train()
    copied = copy_layer(original)
    x = torch.ones(32, 40)
    torch.manual_seed(11)
    expected = [original(x), original(x)]
    torch.manual_seed(11)
    got = [copied(x), copied(x)]
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    assert not torch.equal(got[0], got[1])


def test_compiled_packed_dropout_is_torchs_own_dropout_without_graph_breaks():
    """fast_dropout is the default, so torch.compile users meet PackedDropout: its numpy draws would split the graph
    (a break at every call), so compiled it is torch's dropout: one graph, the same keep rate."""
    import torch._dynamo

    torch._dynamo.reset()
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), PackedDropout(0.5), torch.nn.Linear(16, 1)).train()
    explained = torch._dynamo.explain(net)(torch.randn(4096, 8))
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    out = torch.compile(net[:2])(torch.ones(4096, 8))
    assert 0.45 < (out == 0).float().mean().item() < 0.55
