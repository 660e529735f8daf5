"""engine/matmul.py: the oneDNN float32 product is the product (plain, with a bias, with a strided weight)."""

import torch

from trainpipe.engine.matmul import matmul_nt


def test_matmul_nt_is_the_float32_product():
    gen = torch.Generator().manual_seed(1)
    a, b, bias = torch.randn(50, 33, generator=gen), torch.randn(70, 33, generator=gen), torch.randn(70, generator=gen)
    assert torch.allclose(matmul_nt(a, b), a @ b.T, rtol=1e-5, atol=1e-5)
    assert torch.allclose(matmul_nt(a, b, bias), a @ b.T + bias, rtol=1e-5, atol=1e-5)
    assert torch.allclose(matmul_nt(a, b.T.contiguous().T), a @ b.T, rtol=1e-5, atol=1e-5)  # strided weight
