"""Which reduced precision this machine runs natively: bf16 autocast on a CPU without bf16 instructions is
emulated by torch and far slower than float32, so `amp: bf16` trains in float32 there (with a warning).

Measured on a 2-core AMD EPYC (AVX2, no avx512_bf16): forward + backward + Adam of a 32 → 256 → 128 → 64 → 1
MLP on 512 rows took 4.0 ms a step in float32 and 46 ms under bf16 autocast (11.6×). The flag is read from
/proc/cpuinfo: torch exposes it only through private functions (torch.cpu._is_avx512_bf16_supported)."""

from __future__ import annotations

import functools
import sys


@functools.cache
def bf16_is_native() -> bool:
    """Whether the CPU multiplies bf16 natively (avx512_bf16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_amp(amp: str, device_type: str) -> str:
    """The autocast a run uses for `model.params.amp` on this device: bf16 on a CPU that would only emulate it
    becomes none (float32)."""
    if amp == "bf16" and device_type == "cpu" and not bf16_is_native():
        _warn_once("warning: model.params.amp bf16: this CPU has no native bf16 (avx512_bf16 or AMX), where torch "
                   "emulates it about 10x slower than float32; training in float32")
        return "none"
    return amp


@functools.cache
def _warn_once(message: str) -> None:  # once per process: every trial of a study builds a trainer
    print(message, file=sys.stderr, flush=True)
