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
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: nn.Linear's own path and dtype
        assert fast(x).dtype == torch.bfloat16
