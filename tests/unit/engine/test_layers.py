"""PackedDropout: the keep rate and scaling of dropout, reproducible from the torch seed, off in eval."""

from __future__ import annotations

import pytest

import torch as torch

from trainpipe.engine.layers import PackedDropout


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drops_a_fraction_p_and_keeps_the_expected_value(p):
    layer = PackedDropout(p).train()
    torch.manual_seed(0)
    out = layer(torch.ones(1000, 1001))  # an odd size: the last random word is only partly used
    assert (out == 0).float().mean().item() == pytest.approx(p, abs=0.003)
    assert out.mean().item() == pytest.approx(1.0, abs=0.01)
    assert out.unique().tolist() == [0.0, pytest.approx(1 / (1 - p))]


def test_same_seed_same_mask_and_gradients_flow_through_kept_values_only():
    layer = PackedDropout(0.3).train()
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(5)
    first = layer(x)
    torch.manual_seed(5)
    assert torch.equal(first, layer(x))
    first.sum().backward()
    assert torch.equal(x.grad != 0, first != 0)


def test_eval_mode_is_the_identity():
    x = torch.randn(8, 4)
    assert torch.equal(PackedDropout(0.5).eval()(x), x)
