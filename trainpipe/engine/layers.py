"""Small torch layers the engine's fast path uses."""

from __future__ import annotations

import torch

_WORDS = 4  # 16-bit draws per 64-bit random word


class PackedDropout(torch.nn.Module):
    """Inverted dropout whose mask comes from 16-bit slices of 64-bit random words.

    torch's CPU dropout draws one Bernoulli sample per element, the largest per-row cost of a small MLP
    on this CPU (shared/FACTS.md). Four 16-bit draws per random word need a quarter of the generator calls;
    p is rounded to a multiple of 1/65536. The words come from torch's default generator, so seeding and the
    checkpointed RNG state make it as reproducible (and resumable) as nn.Dropout, with a different stream.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = int(round(p * 65536)) - 32768  # keep a value when its signed 16-bit draw is >= this

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        words = torch.empty((n + _WORDS - 1) // _WORDS, dtype=torch.int64, device=x.device)
        words.random_(-2**63, 2**63 - 1)
        keep = words.view(torch.int16)[:n].view(x.shape) >= self.threshold
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
