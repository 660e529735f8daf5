"""engine/matmul.py: the oneDNN float32 product is the product, and its Linear is nn.Linear (outputs, gradients,
state_dict)."""

import torch

from trainpipe.engine.matmul import Linear, matmul_nt


def test_matmul_nt_is_the_float32_product():
    gen = torch.Generator().manual_seed(1)
    a, b, bias = torch.randn(50, 33, generator=gen), torch.randn(70, 33, generator=gen), torch.randn(70, generator=gen)
    assert torch.allclose(matmul_nt(a, b), a @ b.T, rtol=1e-5, atol=1e-5)
    assert torch.allclose(matmul_nt(a, b, bias), a @ b.T + bias, rtol=1e-5, atol=1e-5)
    assert torch.allclose(matmul_nt(a, b.T.contiguous().T), a @ b.T, rtol=1e-5, atol=1e-5)  # strided weight


def test_linear_matches_nn_linear_in_output_gradients_and_state_dict():
    torch.manual_seed(0)
    fast, plain = Linear(24, 9), torch.nn.Linear(24, 9)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(40, 24)
    outputs = []
    for layer in (fast, plain):
        xi = x.clone().requires_grad_()
        out = layer(xi)
        (out * torch.arange(9.0)).sum().backward()
        outputs.append((out.detach(), xi.grad, layer.weight.grad, layer.bias.grad))
    for got, want in zip(*outputs):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
    assert fast.state_dict().keys() == plain.state_dict().keys()
    wide = Linear(256, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: nn.Linear's own path and dtype
        assert wide(torch.randn(40, 256)).dtype == torch.bfloat16


def test_a_small_layer_under_cpu_autocast_computes_in_float32_from_the_float32_weights():
    """A binary or few-class head: float32 output and gradients, the plain float32 product of the bf16 input."""
    torch.manual_seed(0)
    head, plain = Linear(64, 1, head=True), torch.nn.Linear(64, 1)
    plain.load_state_dict(head.state_dict())
    assert head.float32_under_autocast and not Linear(256, 4, head=True).float32_under_autocast
    assert not Linear(4, 16).float32_under_autocast  # a hidden layer keeps autocast's bf16
    x = torch.randn(40, 64).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(x)
    assert out.dtype == torch.float32 and torch.equal(out, plain(x.detach().float()))
    out.sum().backward()
    assert x.grad.dtype == torch.bfloat16 and head.weight.grad.dtype == torch.float32
    assert torch.equal(head.weight.grad, x.detach().float().sum(0, keepdim=True))
