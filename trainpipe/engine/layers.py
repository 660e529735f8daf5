"""Small torch layers the engine's fast path uses."""

from __future__ import annotations

import numpy as np
import torch

_DRAW = np.int16  # one 16-bit draw per element: p is rounded to a multiple of 1/65536
_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}  # the float dtype's bit pattern, by item size
_SIGNED = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def dropout_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> torch.Tensor:
    """Inverted-dropout multipliers: 0 with probability p, else 1/(1-p) in `dtype`, one independent draw each.

    Why not `torch.bernoulli_`: on this CPU its per-element cost is the largest per-row cost of a small MLP
    (shared/FACTS.md), and turning its bool mask into floats is a second slow pass. Here the 16-bit draws are
    slices of 64-bit words from numpy's SFC64 generator (a fraction of a nanosecond per element), compared with
    an integer threshold, and the kept elements get the bit pattern of 1/(1-p) in `dtype` with one integer
    multiply, so the mask is made in the compute dtype (bf16 under autocast) without a conversion pass.
    The generator is seeded by one draw from torch's default generator per call: `torch.manual_seed` and the
    RNG state a checkpoint holds make the masks as reproducible and resumable as nn.Dropout's (another stream).
    In bf16, 1/(1-p) is rounded as torch's own dropout rounds it under autocast (1/0.9 → 1.109375).
    """
    n = int(np.prod(shape))
    seed = int(torch.empty((), dtype=torch.int64).random_())  # [0, 2**63): a fresh stream per call
    words = np.random.SFC64(seed).random_raw(-(-n * 2 // 8))
    keep = words.view(_DRAW)[:n] >= int(round(p * 65536)) - 32768  # P(keep) = 1 - round(p·65536)/65536
    scale = torch.tensor(1.0 / (1.0 - p), dtype=dtype)
    size = scale.element_size()
    if not dtype.is_floating_point or size not in _UINT:
        return torch.from_numpy(keep).to(dtype).mul_(scale).view(shape)
    bits = _UINT[size](int(scale.view(_SIGNED[size]).item()) & ((1 << 8 * size) - 1))
    pattern = np.multiply(keep.view(np.uint8), bits, dtype=_UINT[size])  # 0 or the scale's bits
    return torch.from_numpy(pattern).view(dtype).view(shape)


class PackedDropout(torch.nn.Module):
    """Inverted dropout whose CPU masks come from `dropout_mask` (fast 16-bit draws, made in the compute dtype).

    The output is `x * mask` with the scale folded into the mask: autograd keeps the mask for the backward pass,
    one multiply each way. On other devices it is torch's own dropout (fused there)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return torch.nn.functional.dropout(x, self.p, True)
        return x * dropout_mask(x.shape, self.p, x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}"
