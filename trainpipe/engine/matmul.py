"""Float32 matrix products on oneDNN on the CPU, and a linear layer that uses them.

Why: torch's CPU float32 matmul is MKL's sgemm, which on this AMD CPU runs its AVX2 kernels (about 90 GFLOP/s a
core); oneDNN's (torch.ops.mkldnn._linear_pointwise, what torch.compile's CPU backend calls for linear layers)
uses AVX-512: measured 2.3-2.5x faster on two_tower's (1024 × 128) · (128 × 1024) products and 1.6x on its
(1024 × 128) · (128 × 128) ones (its towers' layers through `Linear`: a training step 12.1 against 13.4 ms of CPU
time, one thread). torch_mlp's layers are `Linear` too: the same speed at its training batch of 512, about 2×
on large forward batches (validation, predict: 0.36 against 0.74 s per million rows, benchmarks/bench_predict.py).
It is used for float32 CPU tensors where torch was built with oneDNN, torch's own product everywhere else (CUDA,
bf16, other builds, torch.compile). The op is torch's private inductor entry point, so its absence falls back to
the plain product rather than failing.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F


def _onednn_linear() -> Any:
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


_LINEAR = _onednn_linear()


def matmul_nt(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """a @ bᵀ (+ bias per column), not differentiable (callers give the gradients)."""
    if _LINEAR is not None and a.device.type == "cpu" and a.dtype == b.dtype == torch.float32 and (
            bias is None or bias.dtype == torch.float32) and not torch.compiler.is_compiling():
        return _LINEAR(a, b, bias, "none", [], "")
    return a @ b.T if bias is None else torch.addmm(bias[None, :], a, b.T)


class _LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return matmul_nt(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = matmul_nt(grad, weight.T) if ctx.needs_input_grad[0] else None
        grad_w = matmul_nt(grad.T.contiguous(), x.T) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(dim=0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


class Linear(torch.nn.Linear):
    """torch.nn.Linear (same parameters and state_dict) whose float32 CPU products run on oneDNN; autocast,
    torch.compile and other devices and dtypes take F.linear, as nn.Linear does, except a small layer under CPU
    autocast (`float32_under_autocast`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, head: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.head = head

    @functools.cached_property
    def float32_under_autocast(self) -> bool:
        """A small output layer (`head`: a binary, regression or few-class head) computes in float32 under CPU
        autocast.

        Why: bf16 products with one small dimension take a slow path in oneDNN on this CPU; a 64 → 1 head's
        forward and backward under autocast took 85 µs, 8% of the benchmark MLP's bf16 step, against 46 µs in
        float32 (its input cast included), 256 → 1 87 against 73 µs and 64 → 16 86 against 66 µs; from 256 → 2
        on the bf16 product is as fast or faster (256 → 4: 94 against 111 µs), hence the bounds (one output up to
        256 inputs, up to 16 outputs up to 64 inputs). Only the output layer: a narrow hidden layer in float32
        would leave the normalisation, activation and dropout after it in float32 too (not measured). Float32 is
        also the more exact of the two: the logits are not rounded to bf16 before the loss."""
        return self.head and (self.out_features == 1 and self.in_features <= 256
                              or self.out_features <= 16 and self.in_features <= 64)

    def forward(self, x: Tensor) -> Tensor:
        if (self.float32_under_autocast and x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and not torch.compiler.is_compiling()):
            with torch.autocast("cpu", enabled=False):
                return F.linear(x.float(), self.weight, self.bias)
        # torch.compile: F.linear, which inductor lowers to the same oneDNN kernel itself (its lowering of the
        # private op wants the weight as a packed constant and fails on a trained one)
        if (_LINEAR is None or x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 2
                or torch.is_autocast_enabled("cpu") or torch.compiler.is_compiling()):
            return F.linear(x, self.weight, self.bias)
        return _LinearFunction.apply(x, self.weight, self.bias)
