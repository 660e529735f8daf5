"""Small torch layers the engine's fast path uses."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

_UINT: dict[int, type[np.unsignedinteger]] = {2: np.uint16, 4: np.uint32, 8: np.uint64}  # a float dtype's bit pattern, by item size
_SIGNED = {2: torch.int16, 4: torch.int32, 8: torch.int64}


@functools.lru_cache(maxsize=64)
def _scale_bits(p: float, dtype: torch.dtype) -> tuple[type[np.unsignedinteger], int] | None:
    """The unsigned type of `dtype`'s size and the bit pattern of 1/(1-p) in `dtype` (None: not a 2-, 4- or
    8-byte float)."""
    scale = torch.tensor(1.0 / (1.0 - p), dtype=dtype)
    size = scale.element_size()
    if not dtype.is_floating_point or size not in _UINT:
        return None
    return _UINT[size], int(scale.view(_SIGNED[size]).item()) & ((1 << 8 * size) - 1)


class MaskStream:
    """numpy's SFC64 restarted from 192 bits drawn from torch's default generator at every draw (SFC64's state
    is three 64-bit words and a counter): reproducible under `torch.manual_seed` and resumable from the RNG state a
    checkpoint holds. The seed words are drawn into one tensor whose memory numpy's state dict also reads, so a
    draw's fixed cost is ~1 µs (a new tensor, its numpy view and a seeded SFC64 cost several µs, three times per
    step); the buffers are rebuilt, not copied, when the layer is pickled or deep-copied."""

    def __init__(self) -> None:
        self.bits = np.random.SFC64(0)
        self.seed = torch.empty(4, dtype=torch.int64)
        self.words = self.seed.numpy().view(np.uint64)  # the same memory as `seed`
        self.state = {"bit_generator": "SFC64", "state": {"state": self.words}, "has_uint32": 0, "uinteger": 0}

    def raw(self, count: int) -> np.ndarray:
        """`count` 64-bit words of a stream restarted from torch's default generator."""
        self.seed.random_(-2**63, 2**63 - 1)
        self.words[3] = 1  # the counter
        self.bits.state = self.state
        return self.bits.random_raw(count)

    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]


def dropout_mask(shape: torch.Size, p: float, dtype: torch.dtype, stream: MaskStream | None = None) -> torch.Tensor:
    """Inverted-dropout multipliers: 0 with probability p, else 1/(1-p) in `dtype`, one independent draw each.

    Why not `torch.bernoulli_`: on this CPU its per-element cost is the largest per-row cost of a small MLP
    (shared/FACTS.md), and turning a bool mask into floats is a second slow pass. Here each element gets a 16-bit
    draw (p rounded to a multiple of 1/65536), four to a 64-bit word of numpy's SFC64 generator (about a
    nanosecond a word), compared with an integer threshold; kept elements get the bit pattern of 1/(1-p) in
    `dtype` by one integer multiply, so the mask is made in the compute dtype (bf16 under autocast) with no
    conversion pass. In bf16, 1/(1-p) is rounded as torch's own dropout rounds it under autocast (1/0.9 → 1.109375).
    `stream`: the generator to reuse (a layer's own).
    """
    n = math.prod(shape)
    words = (stream or MaskStream()).raw(-(-n // 4))
    keep = words.view(np.int16)[:n] >= int(round(p * 65536)) - 32768  # P(keep) = 1 - round(p·65536)/65536
    scale = _scale_bits(p, dtype)
    if scale is None:
        return torch.from_numpy(keep).to(dtype).mul_(1.0 / (1.0 - p)).view(shape)
    uint, pattern = scale
    # shaped in numpy: a torch .view(shape) costs ~2 µs, numpy's reshape ~0.1
    return torch.from_numpy(np.multiply(keep.view(np.uint8), uint(pattern), dtype=uint).reshape(shape)).view(dtype)


class PackedDropout(torch.nn.Module):
    """Inverted dropout whose CPU masks come from `dropout_mask` (fast 16-bit draws, made in the compute dtype).

    The output is `x * mask` with the scale folded into the mask: autograd keeps the mask for the backward pass,
    one multiply each way. On other devices, and under torch.compile, it is torch's own dropout (fused there)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.stream = MaskStream()  # restarted from torch's generator on every call: holds no state of its own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or torch.compiler.is_compiling():  # compiled: the numpy draws would break the graph
            return torch.nn.functional.dropout(x, self.p, True)
        return x * dropout_mask(x.shape, self.p, x.dtype, self.stream)

    def extra_repr(self) -> str:
        return f"p={self.p}"
