"""Float32 matrix products on oneDNN on the CPU.

Why: torch's CPU float32 matmul is MKL's sgemm, which on this AMD CPU runs its AVX2 kernels (about 90 GFLOP/s a
core); oneDNN's (torch.ops.mkldnn._linear_pointwise, what torch.compile's CPU backend calls for linear layers)
uses AVX-512: measured 2.3-2.5x faster on two_tower's in-batch (1024 × 128) · (128 × 1024) products. (Its towers'
(1024 × 128) · (128 × 128) layers through it, as an autograd function, made training slower: 20k against 30k
interactions/s, so they stay nn.Linear.) It is used for float32 CPU tensors where torch was built with oneDNN, torch's
own product everywhere else (CUDA, bf16, other builds). The op is torch's private inductor entry point, so its
absence falls back to the plain product rather than failing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _onednn_linear() -> Any:
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


_LINEAR = _onednn_linear()


def matmul_nt(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """a @ bᵀ (+ bias per column), not differentiable (callers give the gradients)."""
    if _LINEAR is not None and a.device.type == "cpu" and a.dtype == b.dtype == torch.float32 and (
            bias is None or bias.dtype == torch.float32):
        return _LINEAR(a, b, bias, "none", [], "")
    return a @ b.T if bias is None else torch.addmm(bias[None, :], a, b.T)
